"""Training the view classifier that judges whether a sample shows what its prompt asked for.

A ResNet-18 from scratch (`models.classifiers.ViewClassifier`) learns, from the arterial frames
of the training split, three binary heads: posterior circulation, plane B and canonical angles.
Its view is "AC A" ... "PC B" when the angles are canonical, else "Others". Frames pass through
`source_size` (the native size of the samples it will judge, e.g. 64 for the tiny model) before
the classifier's 128 x 128, so real and synthetic frames reach it equally blurred. Training uses
BCE on the three logits, random crops, flips and intensity jitter, AdamW with a one-cycle
schedule; the validation split is the holdout. A model directory holds::

    MODEL/
      model.safetensors   weights
      config.json         architecture, heads, source size, training settings, holdout metrics
      log.jsonl           one line per epoch
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from angiosynth import __version__
from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.data.phase import INPUT_SIZE, PhaseFrames, train_transform
from angiosynth.models.classifiers import (
    VIEW_ARCHITECTURE,
    VIEW_HEADS,
    ViewClassifier,
    predict_logits,
    save_classifier,
    view_accuracy,
    view_targets,
)
from angiosynth.runfiles import write_jsonl_atomic
from angiosynth.training.phase import _autocast, deterministic_algorithms, resolve_device

Progress = Callable[[Iterable, int, str], Iterator]


@dataclass(frozen=True)
class ViewTrainOptions:
    """Settings of a view-classifier run.

    Attributes:
        steps: optimiser steps to aim for (epochs = ceil(steps / batches per epoch)).
        batch_size: frames per step.
        lr: peak learning rate (AdamW, one-cycle).
        source_size: side the frames pass through first (None: straight to 128).
        seed: seed of weights and batch order.
        device: auto, cpu or cuda.
        precision: auto, fp32 or bf16 (autocast).
    """

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    source_size: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"


def view_frames(dataset: CuratedDataset, split: str, source_size: int | None, transform=None):
    """The arterial frames of one split (AC/PC, with a prompt) with their head targets.

    Returns:
        (rows of arterial.parquet, PhaseFrames serving (1, 128, 128) images and (3,) targets).
    """
    rows = dataset.arterial()
    rows = rows[(rows["split"] == split) & rows["prompt"].notna()].reset_index(drop=True)
    targets = view_targets(rows["circulation"], rows["plane"], rows["view"])
    frames = PhaseFrames(
        dataset, rows["frame_id"].to_numpy(), targets, transform, size=INPUT_SIZE, via=source_size
    )
    return rows, frames


def train_view_classifier(
    dataset_root: Path,
    out: Path,
    options: ViewTrainOptions | None = None,
    progress: Progress | None = None,
) -> dict:
    """Trains the view classifier on the training split and writes `out`.

    Returns:
        The model's config (with `holdout`: accuracies on the validation split).

    Raises:
        DatasetError: no arterial selection or too few training frames.
    """
    options = options or ViewTrainOptions()
    dataset = CuratedDataset(dataset_root)
    _, train = view_frames(dataset, "train", options.source_size, train_transform())
    holdout_rows, holdout = view_frames(dataset, "val", options.source_size)
    if len(train) < 2:
        raise DatasetError(f"{dataset.root}: fewer than 2 arterial training frames")
    device = resolve_device(options.device)
    start = time.monotonic()
    with deterministic_algorithms():
        torch.manual_seed(options.seed)
        model = ViewClassifier().to(device)
        generator = torch.Generator().manual_seed(options.seed)
        loader = DataLoader(
            train,
            batch_size=options.batch_size,
            shuffle=True,
            generator=generator,
            drop_last=len(train) > options.batch_size,
        )
        history = _fit(model, loader, holdout, holdout_rows["view"], options, device, out, progress)
    config = {
        "angiosynth_version": __version__,
        "task": "view classification of arterial-phase frames (evaluation)",
        "architecture": VIEW_ARCHITECTURE,
        "heads": [list(h) for h in VIEW_HEADS],
        "input": {
            "shape": [1, INPUT_SIZE, INPUT_SIZE],
            "range": [0.0, 1.0],
            "source_size": options.source_size,
        },
        "training": {
            **asdict(options),
            "device": str(device),
            "frames": len(train),
            "seconds": round(time.monotonic() - start, 1),
        },
        "holdout": history[-1]["holdout"] if history else None,
        "dataset": str(Path(dataset_root).resolve()),
    }
    save_classifier(model, out, config)
    return config


def _fit(model, loader, holdout, holdout_views, options, device, out: Path, progress) -> list:
    epochs = max(1, math.ceil(options.steps / max(len(loader), 1)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=options.lr, total_steps=max(epochs * len(loader), 10), pct_start=0.2
    )
    loss_fn = nn.BCEWithLogitsLoss()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        batches = (
            progress(loader, len(loader), f"view epoch {epoch}/{epochs}") if progress else loader
        )
        total = 0.0
        for images, targets in batches:
            with _autocast(device, options.precision):
                logits = model(images.to(device))
            loss = loss_fn(logits.float(), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(targets)
        record = {"epoch": epoch, "train_loss": total / len(loader.dataset)}
        if len(holdout):
            logits = predict_logits(model, holdout, device)
            record["holdout"] = view_accuracy(logits, holdout.labels, holdout_views)
        history.append(record)
        write_jsonl_atomic(out / "log.jsonl", history)
    return history
