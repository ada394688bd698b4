"""Training the view classifier that judges whether a sample shows what its prompt asked for.

A ResNet-18 from scratch (`models.classifiers.ViewClassifier`) learns, from the arterial frames
of the training split, three binary heads: posterior circulation, plane B and canonical angles.
Its view is "AC A" ... "PC B" when the angles are canonical, else "Others". Frames pass through
`source_size` (the native size of the samples it will judge, e.g. 64 for the tiny model) before
the classifier's 128 x 128, so real and synthetic frames reach it equally blurred. Training uses
BCE on the three logits, random crops, flips and intensity jitter, AdamW with a one-cycle
schedule (`training.classifier.ClassifierFit`); the validation split is the holdout. A model
directory holds::

    MODEL/
      model.safetensors   weights
      config.json         architecture, heads, source size, training settings, holdout metrics
      log.jsonl           a record every `log_every` steps and one per epoch
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from angiosynth import __version__
from angiosynth.config import ViewTrainConfig
from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.data.frames import INPUT_SIZE, ClassifierFrames, train_transform
from angiosynth.models.classifiers import (
    VIEW_ARCHITECTURE,
    VIEW_HEADS,
    ViewClassifier,
    predict_logits,
    save_classifier,
    view_accuracy,
    view_targets,
)
from angiosynth.progress import Progress
from angiosynth.runfiles import LOG_FILE
from angiosynth.training.classifier import ClassifierFit


def view_frames(dataset: CuratedDataset, split: str, source_size: int | None, transform=None):
    """The arterial frames of one split (AC/PC, with a prompt) with their head targets.

    Returns:
        (rows of arterial.parquet, ClassifierFrames serving (1, 128, 128) images and (3,) targets).
    """
    rows = dataset.arterial()
    rows = rows[(rows["split"] == split) & rows["prompt"].notna()].reset_index(drop=True)
    targets = view_targets(rows["circulation"], rows["plane"], rows["view"])
    frames = ClassifierFrames(
        dataset, rows["frame_id"].to_numpy(), targets, transform, size=INPUT_SIZE, via=source_size
    )
    return rows, frames


def train_view_classifier(
    dataset_root: Path,
    out: Path,
    config: ViewTrainConfig | None = None,
    progress: Progress | None = None,
) -> dict:
    """Trains the view classifier on the training split and writes `out`.

    Returns:
        The model's config (with `holdout`: accuracies on the validation split).

    Raises:
        DatasetError: no arterial selection or too few training frames.
    """
    config = config or ViewTrainConfig()
    dataset = CuratedDataset(dataset_root)
    _, train = view_frames(dataset, "train", config.source_size, train_transform())
    holdout_rows, holdout = view_frames(dataset, "val", config.source_size)
    if len(train) < 2:
        raise DatasetError(f"{dataset.root}: fewer than 2 arterial training frames")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_FILE).unlink(missing_ok=True)
    start = time.monotonic()

    def evaluate(model) -> dict | None:
        if not len(holdout):
            return None
        logits = predict_logits(model, holdout, next(model.parameters()).device)
        return view_accuracy(logits, holdout.labels, holdout_rows["view"])

    torch.manual_seed(config.seed)
    fit = ClassifierFit(ViewClassifier(), train, config, evaluate)
    history = fit.run(out, progress, desc="view")
    settings = {
        "angiosynth_version": __version__,
        "task": "view classification of arterial-phase frames (evaluation)",
        "architecture": VIEW_ARCHITECTURE,
        "heads": [list(h) for h in VIEW_HEADS],
        "input": {
            "shape": [1, INPUT_SIZE, INPUT_SIZE],
            "range": [0.0, 1.0],
            "source_size": config.source_size,
        },
        "training": {
            **config.model_dump(mode="json"),
            "device": str(fit.accelerator.device),
            "frames": len(train),
            "seconds": round(time.monotonic() - start, 1),
        },
        "holdout": history[-1]["holdout"] if history else None,
        "dataset": str(Path(dataset_root).resolve()),
    }
    save_classifier(fit.unwrapped(), out, settings)
    return settings
