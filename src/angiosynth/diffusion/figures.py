"""Figures of sampling runs: synthetic frames beside real frames of the same condition."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from angiosynth.conditions import CONDITIONS
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.frames import resize_frames
from angiosynth.diffusion.sampling import SAMPLES_FILE
from angiosynth.errors import OptionError
from angiosynth.runfiles import save_figure_atomic

#: Real frames are drawn from these splits, in this order of preference.
REAL_SPLITS = ("test", "val", "train")


def condition_grid(
    samples_dir: Path, dataset_root: Path, out: Path, per_condition: int = 4, seed: int = 0
) -> Path:
    """One row per condition: `per_condition` real frames, then as many synthetic ones.

    Real frames come from the arterial selection of the curated dataset (test split first),
    resized to the samples' size. Writes `out` (PNG; a PDF beside it) and returns it.

    Raises:
        OptionError: no sample is of one of the four conditions.
        DatasetError: `dataset_root` is not a curated dataset with an arterial selection.
    """
    samples = pd.read_parquet(Path(samples_dir) / SAMPLES_FILE)
    conditions = [c for c in CONDITIONS if (samples["condition"] == c).any()]
    if not conditions:
        raise OptionError(f"{samples_dir}: no samples of the conditions {', '.join(CONDITIONS)}")
    dataset = CuratedDataset(dataset_root)
    rng = np.random.default_rng(seed)
    rows, cols = len(conditions), 2 * per_condition
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.3), squeeze=False)
    for row, condition in zip(axes, conditions, strict=True):
        fake = samples[samples["condition"] == condition].head(per_condition)
        images = [np.asarray(Image.open(Path(samples_dir) / f)) for f in fake["file"]]
        size = images[0].shape[0]
        real = _real_frames(dataset, condition, per_condition, size, rng)
        _show_row(row, real, images, condition)
    fig.suptitle("real (left) | synthetic (right)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    save_figure_atomic(fig, out)
    save_figure_atomic(fig, out.with_suffix(".pdf"))
    plt.close(fig)
    return out


def _real_frames(dataset, condition: str, n: int, size: int, rng) -> list[np.ndarray]:
    """Up to `n` arterial frames of `condition`, the most probable frame of as many different
    series as possible, test split first."""
    rows = dataset.arterial()
    rows = rows[rows["view"] == condition]
    rows = rows.assign(order=rows["split"].map({s: i for i, s in enumerate(REAL_SPLITS)}))
    rows = rows.iloc[rng.permutation(len(rows))].sort_values(
        ["order", "probability"], ascending=[True, False], kind="stable"
    )
    rank = rows.groupby("series_uid").cumcount()
    chosen = rows.assign(rank=rank).sort_values(["rank", "order"], kind="stable").head(n)
    if chosen.empty:
        return []
    frames = dataset.read(chosen["frame_id"].to_numpy())
    frames = resize_frames(torch.from_numpy(frames)[:, None], size)
    return [np.round(f[0].numpy() * 255).astype(np.uint8) for f in frames]


def _show_row(axes, real: list[np.ndarray], fake: list[np.ndarray], condition: str) -> None:
    half = len(axes) // 2
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        image = real[i] if i < half and i < len(real) else None
        if i >= half and i - half < len(fake):
            image = fake[i - half]
        if image is not None:
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0].set_ylabel(condition, fontsize=9)
