"""How well a vessel segmenter finds the vessels of held-out frames: Dice and clDice.

The segmenter's probabilities (`gan.segmenter.segment_frames`, whole frames) above a threshold
are its vessel mask; each frame's mask is compared with the frame's true mask
(`evaluation.vessels`): Dice for the overlap, clDice for the centrelines (whether every branch
is found, whatever its width). Frames weigh the same in the means. `held_out_figure` shows a
few frames, their true masks and the predicted probabilities; `record_held_out` adds the scores
to a segmenter run (RUN/metrics.json "held_out", RUN/held_out.png).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from angiosynth.data.segmentation import SegmentationSet
from angiosynth.evaluation.vessels import cl_dice_scores, dice_scores
from angiosynth.gan.segmenter import load_segmenter, segment_frames
from angiosynth.models.segmenter import VesselUNet
from angiosynth.runfiles import METRICS_FILE, save_figure_atomic, write_json_atomic

#: Frames segmented at a time.
SCORE_CHUNK = 32
#: Frames shown by `held_out_figure`.
FIGURE_FRAMES = 4
#: The figure `record_held_out` draws into the run directory.
HELD_OUT_FIGURE = "held_out.png"


def score_segmenter(
    net: VesselUNet, held_out: SegmentationSet, threshold: float = 0.5, device=None
) -> dict:
    """Dice and clDice of the segmenter's masks on `held_out`.

    Args:
        net: the segmenter.
        held_out: frames and their true masks.
        threshold: a pixel is vessel where its probability is above this.
        device: where to run (None: where `net` is).

    Returns:
        {"frames", "targets", "threshold", "dice", "cl_dice" (means over frames),
        "predicted_share", "true_share" (vessel pixels / all pixels), "per_frame": [{"name",
        "frame_id", "dice", "cl_dice"}]}.
    """
    dice, cl_dice, predicted = [], [], 0.0
    n = len(held_out)
    for start in range(0, n, SCORE_CHUNK):
        positions = np.arange(start, min(start + SCORE_CHUNK, n))
        masks = segment_frames(net, held_out.images.read(positions), device=device) > threshold
        truth = held_out.masks[positions]
        dice.append(dice_scores(masks, truth))
        cl_dice.append(cl_dice_scores(masks, truth))
        predicted += float(masks.sum())
    dice, cl_dice = np.concatenate(dice), np.concatenate(cl_dice)
    ids = held_out.frame_ids
    per_frame = [
        {"name": held_out.images.names[k], "frame_id": None if ids is None else int(ids[k]),
         "dice": round(float(dice[k]), 6), "cl_dice": round(float(cl_dice[k]), 6)}
        for k in range(n)
    ]  # fmt: skip
    return {
        "frames": n,
        "targets": held_out.targets,
        "threshold": threshold,
        "dice": float(dice.mean()),
        "cl_dice": float(cl_dice.mean()),
        "predicted_share": predicted / max(held_out.masks.size, 1),
        "true_share": float(held_out.masks.mean()),
        "per_frame": per_frame,
    }


def held_out_figure(
    net: VesselUNet, held_out: SegmentationSet, path: Path, frames: int = FIGURE_FRAMES,
    device=None,
) -> Path:  # fmt: skip
    """Draws `frames` held-out frames, evenly spread, in three rows (frame, true mask,
    predicted probability) to `path` (PNG or PDF, atomically); returns `path`."""
    positions = np.unique(np.linspace(0, len(held_out) - 1, min(frames, len(held_out))).round())
    positions = positions.astype(np.int64)
    images = held_out.images.read(positions)
    rows = [
        ("frame", images),
        ("true vessels", held_out.masks[positions].astype(np.float32)),
        ("predicted probability", segment_frames(net, images, device=device)),
    ]
    cols = len(positions)
    fig, axes = plt.subplots(3, cols, figsize=(2.4 * cols, 7.4), squeeze=False)
    for r, (title, row) in enumerate(rows):
        for c in range(cols):
            axes[r][c].imshow(row[c], cmap="gray", vmin=0, vmax=1)
            axes[r][c].axis("off")
        axes[r][0].set_title(title, loc="left", fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, Path(path))
    plt.close(fig)
    return Path(path)


def record_held_out(run: Path, held_out: SegmentationSet, device=None) -> dict:
    """Scores the segmenter of `run` on `held_out`, merges the scores into RUN/metrics.json
    under "held_out" and draws RUN/held_out.png; returns the scores.

    Raises:
        SegmenterFileError: `run` has no usable segmenter.
    """
    run = Path(run)
    net, _ = load_segmenter(run)
    scores = score_segmenter(net, held_out, device=device)
    path = run / METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    write_json_atomic(path, {**metrics, "held_out": {"source": held_out.description, **scores}})
    held_out_figure(net, held_out, run / HELD_OUT_FIGURE, device=device)
    return scores
