"""Training the arterial-phase classifier (paper §2.2, §4.2), and scoring frames with it.

Training (`train_phase_classifier`): frames of annotated series are labelled by the rule in
`angiosynth.data.phase` (by default frames within 0.5 s of the annotated frame positive; mask
frames and frames >= 1.0 s away negative; the rest unused), split patient-disjointly into
training and holdout, and a ResNet-18 (`models.classifiers.phase_classifier`) is trained from
scratch (`training.classifier.ClassifierFit`) with BCE on 128 x 128 inputs, augmented by random
crops, horizontal flips and intensity jitter. Positives are balanced against negatives with
BCE's `pos_weight` = negatives / positives by default. A model directory holds::

    MODEL/
      model.safetensors   weights (safetensors; never pickled)
      config.json         architecture, input, training settings, label rule, holdout, dataset,
                          the selection margin calibrated on the holdout (`calibrate_margin`)
      metrics.json        holdout metrics at threshold 0.5, train loss per epoch, label counts
      log.jsonl           a record every `log_every` steps, one per epoch with holdout metrics
      labels.parquet      the labelled frames and their role (train / holdout)

Selection of the arterial frames with a trained model is curation's (`curation.arterial`);
`PhaseScorer` is the model as selection sees it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from angiosynth import __version__
from angiosynth.config import PhaseTrainConfig
from angiosynth.curation.arterial import (
    KEPT_CIRCULATIONS,
    LABELS_FILE,
    POSITIVE,
    binary_metrics,
    calibrate_margin,
)
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.frames import INPUT_SIZE, ClassifierFrames, train_transform
from angiosynth.data.phase import (
    AMBIGUOUS,
    LabelRule,
    LabelSummary,
    PhaseDataError,
    holdout_split,
    label_frames,
    read_annotations,
)
from angiosynth.errors import OutputExistsError
from angiosynth.models.classifiers import (
    PHASE_ARCHITECTURE,
    load_classifier,
    phase_classifier,
    save_classifier,
)
from angiosynth.progress import Progress
from angiosynth.runfiles import (
    LOG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    write_json_atomic,
    write_table_atomic,
)
from angiosynth.runtime import resolve_device, resolve_precision
from angiosynth.training.classifier import ClassifierFit, predict_probabilities


@dataclass(frozen=True)
class PhaseTrainResult:
    """What a training run wrote and measured."""

    out: Path
    labels: LabelSummary
    holdout: dict
    metrics: dict
    seconds: float


def train_phase_classifier(
    dataset_root: Path,
    annotations: Path,
    out: Path,
    config: PhaseTrainConfig | None = None,
    progress: Progress | None = None,
    on_epoch=None,
    overwrite: bool = False,
) -> PhaseTrainResult:
    """Trains the arterial-phase classifier and writes the model directory `out`.

    Args:
        dataset_root: curated dataset directory.
        annotations: CSV of (series_uid, frame_index) representative arterial frames.
        out: model directory (created; an existing model is replaced only with `overwrite`).
        config: training settings.
        progress: wraps the training steps (e.g. a progress bar).
        on_epoch: called with each epoch's log record.
        overwrite: replace a model already in `out`.

    Raises:
        DatasetError, PhaseDataError: unusable dataset or annotations.
        OutputExistsError: `out` holds a model and `overwrite` is false.
    """
    config = config or PhaseTrainConfig()
    out = Path(out)
    if (out / MODEL_FILE).exists() and not overwrite:
        raise OutputExistsError(f"{out}: holds a model already; use --overwrite to replace it")
    rule = LabelRule(config.positive_window_s, config.negative_gap_s)
    dataset = CuratedDataset(dataset_root)
    used, summary, split = _labelled_frames(dataset, Path(annotations), config, rule)
    holdout = used["role"].to_numpy() == "holdout"
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_FILE).unlink(missing_ok=True)
    start = time.monotonic()
    torch.manual_seed(config.seed)
    fit = _fit(phase_classifier(), dataset, used, holdout, config)
    history = fit.run(out, progress, on_epoch, desc="phase")
    model, device = fit.unwrapped(), fit.accelerator.device
    seconds = time.monotonic() - start
    settings = _train_config(dataset.root, Path(annotations), config, rule, device, summary, split)
    settings["training"].update(pos_weight=fit.pos_weight, epochs=fit.epochs)
    settings["selection"] = _holdout_calibration(model, dataset, used[holdout], device, config)
    metrics = {
        **_train_metrics(history, summary, split, seconds),
        "selection": settings["selection"],
    }
    save_classifier(model, out, settings)
    write_json_atomic(out / METRICS_FILE, metrics)
    write_table_atomic(used, out / LABELS_FILE)
    return PhaseTrainResult(out, summary, split, metrics, seconds)


def _fit(model, dataset, used: pd.DataFrame, holdout: np.ndarray, config) -> ClassifierFit:
    """The classifier fit on the training rows, measuring the holdout rows after each epoch."""
    rows = used[~holdout]
    labels = rows["label"].to_numpy(dtype=np.float32)
    frames = ClassifierFrames(dataset, rows["frame_id"].to_numpy(), labels, train_transform())
    holdout_frames = ClassifierFrames(dataset, used["frame_id"][holdout], used["label"][holdout])
    weights = None
    if config.balance == "sampler":
        weights = np.where(labels == 1, 0.5 / max(labels.sum(), 1),
                           0.5 / max((1 - labels).sum(), 1))  # fmt: skip
    weight = pos_weight(rows) if config.balance == "pos_weight" else 1.0

    def evaluate(trained: nn.Module) -> dict:
        device = next(trained.parameters()).device
        probability = _predict(trained, holdout_frames, device, config)
        return binary_metrics(probability, holdout_frames.labels)

    return ClassifierFit(model, frames, config, evaluate, weight, weights, channels_last=True)


def _predict(
    model: nn.Module, frames: ClassifierFrames, device, config, progress=None
) -> np.ndarray:
    """Arterial probabilities (N,) of `frames` under the run's precision."""
    return predict_probabilities(
        model, frames, device, _autocast_precision(config), config.batch_size, config.workers,
        channels_last=True, progress=progress,
    )  # fmt: skip


def _labelled_frames(
    dataset: CuratedDataset, annotations: Path, config: PhaseTrainConfig, rule: LabelRule
) -> tuple[pd.DataFrame, LabelSummary, dict]:
    """Labelled (non-ambiguous) frames with a `role` column (train / holdout)."""
    kept = dataset.frames[dataset.frames["circulation"].isin(KEPT_CIRCULATIONS)]
    labelled, summary = label_frames(kept, read_annotations(annotations), rule)
    if summary.positives == 0:
        raise PhaseDataError(
            f"{annotations}: no annotation matches a stored frame of {dataset.root} "
            "(by series_uid and frame_index)"
        )
    if summary.negatives == 0:
        raise PhaseDataError(f"{annotations}: the label rule leaves no negative frames")
    columns = ["frame_id", "series_uid", "patient_id", "split", "frame_index", "time_s",
               "is_mask", "dt_s", "label"]  # fmt: skip
    used = labelled.loc[labelled["label"] != AMBIGUOUS, columns].reset_index(drop=True)
    holdout, split = holdout_split(used, config.seed, config.holdout_share)
    for side in ("train", "holdout"):
        if split[side]["positives"] == 0 or split[side]["negatives"] == 0:
            raise PhaseDataError(
                f"{annotations}: the {side} patients have no positive or no negative frames"
            )
    return used.assign(role=np.where(holdout, "holdout", "train")), summary, split


def _autocast_precision(config: PhaseTrainConfig) -> str:
    """The training's mixed precision as an autocast precision (auto, fp32, bf16)."""
    return "fp32" if config.mixed_precision in ("no", "fp32") else config.mixed_precision


def _holdout_calibration(model, dataset: CuratedDataset, holdout: pd.DataFrame, device,
                         config) -> dict | None:  # fmt: skip
    """`calibrate_margin` over every stored frame of the holdout series (None: too few)."""
    frames = dataset.frames[dataset.frames["series_uid"].isin(holdout["series_uid"])]
    scored = ClassifierFrames(dataset, frames["frame_id"].to_numpy())
    probability = _predict(model, scored, device, config)
    return calibrate_margin(frames.assign(probability=probability), holdout)


def pos_weight(rows: pd.DataFrame) -> float:
    """Negatives per positive among labelled rows (BCE's `pos_weight`)."""
    positives = int((rows["label"] == POSITIVE).sum())
    return float((len(rows) - positives) / max(positives, 1))


def _train_config(dataset_root, annotations, config, rule, device, summary, split) -> dict:
    training = config.model_dump(mode="json", exclude={"device"})
    training.update(
        device=str(device),
        precision=resolve_precision(_autocast_precision(config), device),
        optimizer="AdamW",
        schedule="one-cycle (20 % warm-up, cosine decay)",
        loss="binary cross-entropy with logits",
        augmentation=repr(train_transform()),
        deterministic=True,
        torch_version=torch.__version__,
    )
    return {
        "angiosynth_version": __version__,
        "task": "arterial-phase frame classification (paper §2.2, §4.2)",
        "architecture": PHASE_ARCHITECTURE,
        "input": {
            "shape": [1, INPUT_SIZE, INPUT_SIZE],
            "range": [0.0, 1.0],
            "resize": "area averaging when shrinking, bilinear when enlarging",
            "memory_format": "channels_last",
        },
        "output": "one logit; sigmoid(logit) = probability of the arterial phase",
        "threshold": 0.5,
        "label_rule": rule.to_dict(),
        "holdout": split,
        "labels": asdict(summary),
        "seed": config.seed,
        "training": training,
        "dataset": str(Path(dataset_root).resolve()),
        "annotations": str(annotations.resolve()),
    }


def _train_metrics(history: list[dict], summary: LabelSummary, split: dict, seconds) -> dict:
    return {
        "holdout": history[-1]["holdout"],
        "train_loss": [h["train_loss"] for h in history],
        "holdout_per_epoch": [h["holdout"] for h in history],
        "counts": {"labels": asdict(summary), "train": split["train"], "holdout": split["holdout"]},
        "seconds": round(seconds, 2),
    }


def load_phase_model(model_dir: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Loads a model directory written by `train_phase_classifier` (eval mode on `device`, in
    channels-last memory format).

    Raises:
        ClassifierFileError: missing files, another architecture, or weights that do not fit.
    """
    model, config = load_classifier(model_dir, PHASE_ARCHITECTURE, device)
    return model.to(memory_format=torch.channels_last), config


class PhaseScorer:
    """A trained phase classifier that scores stored frames (`curation.arterial.FrameScorer`).

    Args:
        model_dir: the model directory.
        device: "auto", "cpu" or "cuda[:k]".
        precision: "auto", "fp32" or "bf16" autocast.
        batch_size: frames per forward pass.
        workers: DataLoader worker processes.
    """

    def __init__(self, model_dir: Path, device: str = "auto", precision: str = "auto",
                 batch_size: int = 64, workers: int = 0) -> None:  # fmt: skip
        self.model_dir, self.device = Path(model_dir), resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.batch_size, self.workers = batch_size, workers
        self.model, self.config = load_phase_model(self.model_dir, self.device)

    def score(self, dataset: CuratedDataset, frame_ids: np.ndarray, progress=None) -> np.ndarray:
        """(N,) float64 arterial probabilities of the stored frames `frame_ids`."""
        return predict_probabilities(
            self.model, ClassifierFrames(dataset, frame_ids), self.device, self.precision,
            self.batch_size, self.workers, channels_last=True, progress=progress,
        )  # fmt: skip
