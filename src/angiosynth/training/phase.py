"""Training and applying the arterial-phase classifier (paper §2.2, §4.2).

Training (`train_phase_classifier`): frames of annotated series are labelled by the rule in
`angiosynth.data.phase` (by default frames within 0.5 s of the annotated frame positive; mask
frames and frames >= 1.0 s away negative; the rest unused), split patient-disjointly into
training and holdout, and a ResNet-18 (`models.classifiers.phase_classifier`) is trained from
scratch with BCE on 128 x 128 inputs, augmented by random crops, horizontal flips and intensity
jitter. Positives are balanced against negatives with BCE's `pos_weight` = negatives /
positives by default. A model directory holds::

    MODEL/
      model.safetensors   weights (safetensors; never pickled)
      config.json         architecture, input, training settings, label rule, holdout, dataset,
                          the selection margin calibrated on the holdout (`calibrate_margin`)
      metrics.json        holdout metrics at threshold 0.5, train loss per epoch, label counts
      log.jsonl           one line per epoch: train loss and holdout metrics
      labels.parquet      the labelled frames and their role (train / holdout)

Selection (`select_arterial`): every stored frame of the kept series is scored and, per series,
the frames with probability >= a threshold (or the K most probable) are kept in
DATASET/arterial.parquet with their prompt (default: probability >= 0.5, a logit within the
model's holdout-calibrated margin of the series' highest, and one contiguous run of frames
around the most probable one, see `select_mask` and `calibrate_margin`); all scores go to
DATASET/phase_scores.parquet. With the phantom's ground truth at hand, precision / recall /
accuracy against `is_arterial` go to DATASET/phase_metrics.json, and the curation report is
redrawn.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from angiosynth import __version__
from angiosynth.conditions import prompt_for
from angiosynth.curation import report
from angiosynth.curation.dataset import (
    ARTERIAL_FILE,
    SETTINGS_FILE,
    CuratedDataset,
    DatasetError,
    write_table_atomic,
)
from angiosynth.data.phase import (
    AMBIGUOUS,
    INPUT_SIZE,
    NEGATIVE,
    POSITIVE,
    LabelRule,
    LabelSummary,
    PhaseDataError,
    PhaseFrames,
    holdout_split,
    label_frames,
    read_annotations,
    train_transform,
)
from angiosynth.models.classifiers import PHASE_ARCHITECTURE, phase_classifier
from angiosynth.runfiles import write_json_atomic, write_jsonl_atomic

Progress = Callable[[Iterable, int, str], Iterator]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.jsonl"
LABELS_FILE = "labels.parquet"
PHASE_SCORES_FILE = "phase_scores.parquet"
PHASE_METRICS_FILE = report.PHASE_METRICS_FILE
#: Per-series logit margin of `select_mask` for models without a calibrated one (trained before
#: `calibrate_margin`): with the contiguous run, the most accurate of 4-6 on a phantom archive
#: other than the demo's (seed 1, 12 patients: accuracy 0.974).
DEFAULT_MARGIN = 5.5
#: `SelectOptions.margin` value that takes the model's calibrated margin.
AUTO_MARGIN = "auto"
KEPT_CIRCULATIONS = ("anterior", "posterior")
ARTERIAL_COLUMNS = [
    "frame_id", "series_uid", "patient_id", "split", "circulation", "plane", "primary_angle",
    "secondary_angle", "view", "probability", "prompt",
]  # fmt: skip


PRECISIONS = ("auto", "fp32", "bf16")
BALANCES = ("pos_weight", "sampler", "none")


class PhaseModelError(ValueError):
    """A model directory that is missing files or does not hold a phase classifier."""


@dataclass(frozen=True)
class PhaseTrainOptions:
    """Settings of a classifier training run (defaults: the CLI's).

    Attributes:
        epochs: passes over the training frames; None: as many as `steps` optimiser steps need
            (so a small dataset still trains long enough: 12 phantom patients give 8 batches
            per epoch, and 8 epochs left the classifier uncalibrated, recall 0 at 0.5).
        steps: optimiser steps to aim for when `epochs` is None (rounded up to whole epochs).
        batch_size: frames per optimiser step.
        lr: peak learning rate of AdamW's one-cycle schedule.
        weight_decay: AdamW weight decay.
        seed: seeds weights, shuffling, augmentation and the fallback holdout split.
        workers: DataLoader worker processes (0 = read in the training process).
        device: "auto" (CUDA when available), "cpu" or "cuda[:k]".
        precision: "fp32", "bf16" autocast, or "auto": bf16 on GPUs that support it and on CPUs
            with AMX tiles (there it trains 1.6x faster), else fp32.
        balance: "pos_weight" (BCE weight negatives/positives on positives), "sampler"
            (positives and negatives drawn equally often, with replacement) or "none".
        rule: the label rule.
        holdout_share: share of annotated patients held out when the dataset split is too small.
    """

    epochs: int | None = None
    steps: int = 240
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    precision: str = "auto"
    balance: str = "pos_weight"
    rule: LabelRule = field(default_factory=LabelRule)
    holdout_share: float = 0.2

    def __post_init__(self) -> None:
        if (self.epochs is not None and self.epochs < 1) or self.steps < 1:
            raise ValueError("epochs and steps must be >= 1")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError("batch size must be >= 1 and the learning rate > 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.balance not in BALANCES:
            raise ValueError(f"balance must be pos_weight, sampler or none, got {self.balance!r}")


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
    options: PhaseTrainOptions | None = None,
    progress: Progress | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    overwrite: bool = False,
) -> PhaseTrainResult:
    """Trains the arterial-phase classifier and writes the model directory `out`.

    Args:
        dataset_root: curated dataset directory.
        annotations: CSV of (series_uid, frame_index) representative arterial frames.
        out: model directory (created; an existing model is replaced only with `overwrite`).
        options: training settings.
        progress: wraps the batches of each epoch (e.g. a progress bar).
        on_epoch: called with each epoch's log record.
        overwrite: replace a model already in `out`.

    Raises:
        DatasetError, PhaseDataError: unusable dataset or annotations.
        FileExistsError: `out` holds a model and `overwrite` is false.
    """
    options = options or PhaseTrainOptions()
    out = Path(out)
    if (out / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out}: holds a model already; use --overwrite to replace it")
    dataset = CuratedDataset(dataset_root)
    used, summary, split = _labelled_frames(dataset, Path(annotations), options)
    holdout = used["role"].to_numpy() == "holdout"
    device = resolve_device(options.device)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with deterministic_algorithms():
        torch.manual_seed(options.seed)
        model = phase_classifier().to(device, memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(options.seed)
        loader = _train_loader(dataset, used[~holdout], options, generator)
        holdout_frames = PhaseFrames(dataset, used["frame_id"][holdout], used["label"][holdout])
        fit = _Fit(model, loader, holdout_frames, options, device, pos_weight(used[~holdout]))
        history = fit.run(out, progress, on_epoch)
    seconds = time.monotonic() - start
    config = _train_config(dataset.root, Path(annotations), options, device, summary, split)
    config["training"].update(pos_weight=fit.pos_weight, epochs=fit.epochs)
    config["selection"] = _holdout_calibration(model, dataset, used[holdout], device, options)
    metrics = {**_train_metrics(history, summary, split, seconds), "selection": config["selection"]}
    save_phase_model(model, out, config)
    write_json_atomic(out / METRICS_FILE, metrics)
    write_table_atomic(used, out / LABELS_FILE)
    return PhaseTrainResult(out, summary, split, metrics, seconds)


def _labelled_frames(
    dataset: CuratedDataset, annotations: Path, options: PhaseTrainOptions
) -> tuple[pd.DataFrame, LabelSummary, dict]:
    """Labelled (non-ambiguous) frames with a `role` column (train / holdout)."""
    kept = dataset.frames[dataset.frames["circulation"].isin(KEPT_CIRCULATIONS)]
    labelled, summary = label_frames(kept, read_annotations(annotations), options.rule)
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
    holdout, split = holdout_split(used, options.seed, options.holdout_share)
    for side in ("train", "holdout"):
        if split[side]["positives"] == 0 or split[side]["negatives"] == 0:
            raise PhaseDataError(
                f"{annotations}: the {side} patients have no positive or no negative frames"
            )
    return used.assign(role=np.where(holdout, "holdout", "train")), summary, split


def _holdout_calibration(model, dataset: CuratedDataset, holdout: pd.DataFrame, device,
                         options) -> dict | None:  # fmt: skip
    """`calibrate_margin` over every stored frame of the holdout series (None: too few)."""
    frames = dataset.frames[dataset.frames["series_uid"].isin(holdout["series_uid"])]
    scored = PhaseFrames(dataset, frames["frame_id"].to_numpy())
    probability = predict(model, scored, device, options)
    return calibrate_margin(frames.assign(probability=probability), holdout)


def logits(probability: pd.Series | np.ndarray) -> np.ndarray:
    """(N,) log(p / (1 - p)) of (N,) probabilities, clipped to 1e-12 from 0 and 1."""
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def calibrate_margin(scores: pd.DataFrame, labelled: pd.DataFrame) -> dict | None:
    """The per-series logit margin of `select_mask`, set from the holdout series.

    In each holdout series, the positive gap is how far below the series' highest logit its
    lowest positive frame lies (the edge of the positive window, 0.5 s from the annotated frame
    by default), and the negative gap how far below it its highest negative frame lies (1.0 s
    away). The margin is halfway between the median positive and the median negative gap: the
    boundary of the arterial phase is placed between the two windows of the label rule, on the
    scale of this model's own logits, which moves from one training run to the next.

    Args:
        scores: series_uid, frame_id and probability of every frame of the holdout series.
        labelled: the holdout's labelled frames (frame_id, series_uid, label).

    Returns:
        {"margin", "positive_gap_median", "negative_gap_median", "series"}, or None when no
        holdout series has both a positive and a negative frame.
    """
    logit = pd.Series(logits(scores["probability"]), index=scores["frame_id"].to_numpy())
    highest = logit.groupby(scores["series_uid"].to_numpy()).max()
    rows = labelled[labelled["frame_id"].isin(logit.index)]
    gap = (
        highest.reindex(rows["series_uid"]).to_numpy() - logit.reindex(rows["frame_id"]).to_numpy()
    )
    rows = rows.assign(gap=gap)
    positive = rows[rows["label"] == POSITIVE].groupby("series_uid")["gap"].max()
    negative = rows[rows["label"] == NEGATIVE].groupby("series_uid")["gap"].min()
    both = positive.index.intersection(negative.index)
    if len(both) == 0:
        return None
    pos, neg = float(positive[both].median()), float(negative[both].median())
    return {"margin": round((pos + neg) / 2, 4), "positive_gap_median": round(pos, 4),
            "negative_gap_median": round(neg, 4), "series": len(both)}  # fmt: skip


def pos_weight(rows: pd.DataFrame) -> float:
    """Negatives per positive among labelled rows (BCE's `pos_weight`)."""
    positives = int((rows["label"] == POSITIVE).sum())
    return float((len(rows) - positives) / max(positives, 1))


def _train_loader(
    dataset: CuratedDataset, rows: pd.DataFrame, options: PhaseTrainOptions, generator
) -> DataLoader:
    """Shuffled, augmented training batches of (B, 1, 128, 128) frames and (B,) labels."""
    labels = rows["label"].to_numpy(dtype=np.float32)
    frames = PhaseFrames(dataset, rows["frame_id"].to_numpy(), labels, train_transform())
    sampler = None
    if options.balance == "sampler":
        share = np.where(labels == 1, 0.5 / max(labels.sum(), 1), 0.5 / max((1 - labels).sum(), 1))
        sampler = WeightedRandomSampler(share.tolist(), len(labels), True, generator=generator)
    return DataLoader(
        frames,
        batch_size=options.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=options.workers,
        persistent_workers=options.workers > 0,
        drop_last=len(frames) > options.batch_size,
    )


class _Fit:
    """The optimisation loop: AdamW, one-cycle learning rate, BCE with logits."""

    def __init__(self, model, loader, holdout, options, device, weight: float) -> None:
        self.model, self.loader, self.holdout = model, loader, holdout
        self.options, self.device = options, device
        self.epochs = options.epochs or math.ceil(options.steps / max(len(loader), 1))
        self.pos_weight = weight if options.balance == "pos_weight" else 1.0
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(self.pos_weight, device=device))
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=options.lr, weight_decay=options.weight_decay
        )
        # OneCycleLR divides by the length of its warm-up: give very short runs at least 10 steps.
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=options.lr, total_steps=max(self.epochs * len(loader), 10),
            pct_start=0.2,
        )  # fmt: skip

    def run(self, out: Path, progress: Progress | None, on_epoch) -> list[dict]:
        """Trains all epochs; after each, evaluates the holdout and rewrites MODEL/log.jsonl."""
        wrap = progress or (lambda items, total, desc: iter(items))
        history: list[dict] = []
        epochs = self.epochs
        for epoch in range(1, epochs + 1):
            start = time.monotonic()
            batches = wrap(self.loader, len(self.loader), f"epoch {epoch}/{epochs}")
            loss = self._epoch(batches)
            labels = self.holdout.labels
            probability = predict(self.model, self.holdout, self.device, self.options)
            record = {
                "epoch": epoch,
                "train_loss": loss,
                "seconds": round(time.monotonic() - start, 2),
                "holdout": binary_metrics(probability, labels),
            }
            history.append(record)
            write_jsonl_atomic(out / LOG_FILE, history)
            if on_epoch is not None:
                on_epoch(record)
        return history

    def _epoch(self, batches: Iterable) -> float:
        """One pass over the training batches; returns the mean loss."""
        self.model.train()
        total, count = 0.0, 0
        for images, labels in batches:
            images = images.to(self.device, memory_format=torch.channels_last)
            labels = labels.to(self.device)
            with _autocast(self.device, self.options.precision):
                logits = self.model(images)[:, 0]
            loss = self.loss(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
            total += loss.detach().item() * len(labels)
            count += len(labels)
        return total / max(count, 1)


def predict(
    model: nn.Module,
    frames: PhaseFrames,
    device: torch.device,
    options=None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Arterial probabilities (N,) float64 of the (N, 1, 128, 128) frames served by `frames`.

    Args:
        model: the classifier (set to eval mode here).
        frames: the frames, in order.
        device: where the model lives.
        options: anything with `batch_size`, `workers` and `precision` attributes.
        progress: wraps the batches (e.g. a progress bar).
    """
    batch_size = getattr(options, "batch_size", 64)
    workers = getattr(options, "workers", 0)
    precision = getattr(options, "precision", "fp32")
    loader = DataLoader(frames, batch_size=batch_size, shuffle=False, num_workers=workers)
    batches = progress(loader, len(loader), "score") if progress else loader
    model.eval()
    out = []
    with torch.no_grad():
        for images, _ in batches:
            images = images.to(device, memory_format=torch.channels_last)
            with _autocast(device, precision):
                logits = model(images)[:, 0]
            out.append(torch.sigmoid(logits.double()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def binary_metrics(probability: np.ndarray, label: np.ndarray, threshold: float = 0.5) -> dict:
    """Precision, recall, accuracy at `threshold` and ROC AUC of (N,) probabilities.

    Precision is None when nothing is predicted positive, recall when there are no positives,
    ROC AUC when only one class is present.
    """
    label = np.asarray(label).astype(bool)
    predicted = np.asarray(probability) >= threshold
    tp = int((predicted & label).sum())
    fp = int((predicted & ~label).sum())
    fn = int((~predicted & label).sum())
    tn = int((~predicted & ~label).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "accuracy": (tp + tn) / len(label) if len(label) else None,
        "roc_auc": roc_auc(probability, label),
        "threshold": threshold,
        "n": len(label),
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def roc_auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None when only
    one class is present."""
    label = np.asarray(label).astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(score, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def resolve_device(name: str) -> torch.device:
    """The device named: `auto` is CUDA when available, else CPU; `cuda` must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name}: unknown device") from err


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast precision, fp32 or bf16; `auto` is bf16 on CUDA devices that support it and on
    CPUs with AMX tiles (bf16 matrix units), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return "bf16" if device.type == "cpu" and amx() else "fp32"


def resolve_mixed_precision(name: str) -> str:
    """accelerate's `mixed_precision` for a config value: `auto` is bf16 where `resolve_precision`
    finds bf16 fast (CUDA with bf16, CPUs with AMX), else "no". On other CPUs bf16 autocast
    ranged from about 10x slower than fp32 (no AVX512-BF16) to 1.7x faster (ResNet-18 on an
    AVX512-BF16 EPYC, where the tiny UNet's step was still 1.2x slower), so `auto` keeps fp32
    there and bf16 must be asked for."""
    if name != "auto":
        return name
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16" if resolve_precision("auto", device) == "bf16" else "no"


def _autocast(device: torch.device, precision: str):
    enabled = resolve_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Deterministic kernels inside the block (bit-identical reruns on CPU; on CUDA a warning
    names any op without a deterministic kernel), restoring the previous settings after."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


def _train_config(dataset_root, annotations, options, device, summary, split) -> dict:
    training = {k: v for k, v in asdict(options).items() if k not in ("rule", "device")}
    training.update(
        device=str(device),
        precision=resolve_precision(options.precision, device),
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
        "label_rule": options.rule.to_dict(),
        "holdout": split,
        "labels": asdict(summary),
        "seed": options.seed,
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


def save_phase_model(model: nn.Module, out: Path, config: dict) -> None:
    """Writes MODEL/model.safetensors and MODEL/config.json, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / f".{MODEL_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": "resnet18"})
    os.replace(tmp, out / MODEL_FILE)
    write_json_atomic(out / CONFIG_FILE, config)


def load_phase_model(model_dir: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Loads a model directory written by `train_phase_classifier` (eval mode on `device`).

    Raises:
        PhaseModelError: missing files, another architecture, or weights that do not fit.
    """
    model_dir = Path(model_dir)
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (model_dir / name).is_file():
            raise PhaseModelError(f"{model_dir}: not a phase classifier directory (no {name})")
    try:
        config = json.loads((model_dir / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PhaseModelError(f"{model_dir / CONFIG_FILE}: unreadable ({err})") from err
    name = config.get("architecture", {}).get("name") if isinstance(config, dict) else None
    if name != PHASE_ARCHITECTURE["name"]:
        raise PhaseModelError(f"{model_dir / CONFIG_FILE}: architecture {name!r} is not resnet18")
    model = phase_classifier()
    try:
        model.load_state_dict(load_file(model_dir / MODEL_FILE))
    except (SafetensorError, RuntimeError, OSError) as err:
        message = str(err).splitlines()[0]
        raise PhaseModelError(f"{model_dir / MODEL_FILE}: weights do not load ({message})") from err
    return model.to(device, memory_format=torch.channels_last).eval(), config


# --- selection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectOptions:
    """Settings of `select_arterial` (see `select_mask` for the rules).

    Attributes:
        per_series: keep the K most probable frames of each series (threshold and margin unused).
        threshold: keep frames with probability >= threshold ...
        margin: ... and, when set, whose logit is within `margin` of the highest logit of their
            series (a per-series relative cut; "auto": the model's calibrated margin, see
            `calibrate_margin`, or DEFAULT_MARGIN for a model without one) ...
        contiguous: ... and that form one unbroken run of frames around the series' most
            probable frame (the bolus passes the arteries once).
        batch_size: frames scored per forward pass.
        workers: DataLoader worker processes.
        device: "auto", "cpu" or "cuda[:k]".
        precision: "auto", "fp32" or "bf16" (as in `PhaseTrainOptions`).
        truth: phantom ground truth (default: found through DATASET/curation.json).
    """

    per_series: int | None = None
    threshold: float = 0.5
    margin: float | str | None = AUTO_MARGIN
    contiguous: bool = True
    batch_size: int = 64
    workers: int = 0
    device: str = "auto"
    precision: str = "auto"
    truth: Path | None = None

    def __post_init__(self) -> None:
        if self.per_series is not None and self.per_series < 1:
            raise ValueError(f"--per-series must be >= 1, got {self.per_series}")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"--threshold must be in [0, 1], got {self.threshold}")
        margin_ok = self.margin in (AUTO_MARGIN, None) or (
            not isinstance(self.margin, str) and self.margin >= 0
        )
        if not margin_ok:
            raise ValueError(f"--margin must be a number >= 0 or auto, got {self.margin!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")

    def describe(self) -> str:
        if self.per_series is not None:
            return f"top {self.per_series} frames per series"
        rule = f"probability >= {self.threshold:g}"
        if self.margin == AUTO_MARGIN:
            rule += " and logit >= series maximum - the model's calibrated margin"
        elif self.margin is not None:
            rule += f" and logit >= series maximum - {self.margin:g}"
        if self.contiguous:
            rule += ", contiguous around the series' peak"
        return rule


@dataclass(frozen=True)
class SelectionResult:
    """What `select_arterial` wrote and measured."""

    frames: int
    series: int
    selected: int
    without_prompt: int
    metrics: dict


def select_arterial(
    dataset_root: Path,
    model_dir: Path,
    options: SelectOptions | None = None,
    progress: Progress | None = None,
) -> SelectionResult:
    """Scores the kept series' frames and writes DATASET/arterial.parquet (module docstring).

    Raises:
        DatasetError: not a curated dataset, or no kept frames.
        PhaseModelError: unusable model directory.
        PhaseDataError: an explicit ground truth that is unreadable or matches no frame.
    """
    options = options or SelectOptions()
    dataset = CuratedDataset(dataset_root)
    device = resolve_device(options.device)
    model, config = load_phase_model(model_dir, device)
    options = resolve_margin(options, config)
    kept = dataset.frames[dataset.frames["circulation"].isin(KEPT_CIRCULATIONS)]
    kept = kept.reset_index(drop=True)
    if kept.empty:
        raise DatasetError(f"{dataset.root}: no stored frames of anterior/posterior series")
    frames = PhaseFrames(dataset, kept["frame_id"].to_numpy())
    kept["probability"] = predict(model, frames, device, options, progress)
    chosen = select_mask(
        kept, options.per_series, options.threshold, options.margin, options.contiguous
    )
    table = arterial_table(kept[chosen])
    write_table_atomic(kept[["frame_id", "probability"]], dataset.root / PHASE_SCORES_FILE)
    write_table_atomic(table, dataset.root / ARTERIAL_FILE)
    metrics = _selection_metrics(dataset.root, Path(model_dir), kept, chosen, options)
    write_json_atomic(dataset.root / PHASE_METRICS_FILE, metrics)
    report.write_report(dataset.root)
    return SelectionResult(
        frames=len(kept),
        series=int(kept["series_uid"].nunique()),
        selected=len(table),
        without_prompt=int(table["prompt"].isna().sum()),
        metrics=metrics,
    )


def resolve_margin(options: SelectOptions, model_config: dict) -> SelectOptions:
    """`options` with an "auto" margin replaced by the model's calibrated one (config.json
    "selection"), or by DEFAULT_MARGIN when the model has none."""
    if options.margin != AUTO_MARGIN:
        return options
    calibrated = (model_config.get("selection") or {}).get("margin")
    return replace(options, margin=float(calibrated) if calibrated is not None else DEFAULT_MARGIN)


def select_mask(
    scores: pd.DataFrame,
    per_series: int | None = None,
    threshold: float = 0.5,
    margin: float | None = None,
    contiguous: bool = False,
) -> np.ndarray:
    """Which frames to keep, (N,) bool.

    With `per_series` K: the K most probable frames of each series (ties: the earlier row).
    Otherwise: frames with probability >= `threshold` and, when `margin` is set, a logit
    log(p / (1 - p)) at least the highest logit of the series minus `margin`, so the cut
    follows each series' own scale (the paper keeps "the frames with the highest predicted
    arterial probabilities" per series). With `contiguous`, only the unbroken run of such
    frames (in frame_index order) that contains the series' most probable frame is kept: the
    arterial phase is one interval, and an isolated late frame scored high is a venous or
    capillary frame (on the phantom this raised precision by 0.01-0.02 at equal recall).

    Args:
        scores: series_uid and probability columns, one row per frame (and frame_index
            when `contiguous`; rows of a series may come in any order).
    """
    if per_series is not None:
        rank = scores.groupby("series_uid")["probability"].rank(method="first", ascending=False)
        return (rank <= per_series).to_numpy()
    keep = (scores["probability"] >= threshold).to_numpy()
    if margin is not None:
        logit = pd.Series(logits(scores["probability"]), index=scores.index)
        best = logit.groupby(scores["series_uid"]).transform("max")
        keep = keep & (logit >= best - margin).to_numpy()
    return _run_around_peak(scores, keep) if contiguous else keep


def _run_around_peak(scores: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
    """(N,) bool: of the `keep` frames, those in the run of consecutive kept frames (by
    frame_index within each series) that holds the series' most probable frame."""
    frames = pd.DataFrame({"series": scores["series_uid"].to_numpy(),
                           "index": scores["frame_index"].to_numpy()})  # fmt: skip
    order = frames.sort_values(["series", "index"], kind="stable").index.to_numpy()
    series, kept = frames["series"].to_numpy()[order], keep[order]
    probability = scores["probability"].to_numpy()[order]
    same_series = np.r_[False, series[1:] == series[:-1]]
    starts = kept & ~(np.r_[False, kept[:-1]] & same_series)
    run = np.where(kept, np.cumsum(starts), 0)
    peak = pd.Series(probability).groupby(series).idxmax()  # positions in sorted order
    peak_run = pd.Series(run[peak.to_numpy()], index=peak.index).reindex(series).to_numpy()
    result = np.zeros(len(keep), dtype=bool)
    result[order] = kept & (run == peak_run)
    return result


def arterial_table(selected: pd.DataFrame) -> pd.DataFrame:
    """arterial.parquet rows (ARTERIAL_COLUMNS) with each frame's prompt from its own angles;
    the prompt is None where the paper's template does not apply (plane other than A/B)."""
    table = selected.copy()
    table["prompt"] = [
        _prompt_or_none(c, p, a, b)
        for c, p, a, b in zip(
            table["circulation"], table["plane"], table["primary_angle"],
            table["secondary_angle"], strict=True,
        )
    ]  # fmt: skip
    return table.reindex(columns=ARTERIAL_COLUMNS).reset_index(drop=True)


def _prompt_or_none(circulation: str, plane: str, primary: float, secondary: float) -> str | None:
    try:
        return prompt_for(circulation, plane, float(primary), float(secondary))
    except ValueError:
        return None


def _selection_metrics(
    root: Path, model_dir: Path, kept: pd.DataFrame, chosen: np.ndarray, options: SelectOptions
) -> dict:
    metrics: dict = {
        "selection": {
            "rule": options.describe(),
            "margin": options.margin,
            "frames_scored": len(kept),
            "frames_selected": int(chosen.sum()),
            "series": int(kept["series_uid"].nunique()),
            "series_with_selection": int(kept.loc[chosen, "series_uid"].nunique()),
        },
        "model": str(model_dir.resolve()),
    }
    truth_path = find_truth(root, options.truth)
    if truth_path is not None:
        trained = _training_series(model_dir)
        measured = truth_metrics(kept, chosen, load_truth(truth_path), trained)
        if measured is None and options.truth is not None:
            raise PhaseDataError(f"{truth_path}: no frame matches the dataset")
        if measured is not None:
            metrics["ground_truth"] = {"file": str(truth_path), **measured}
    holdout = _model_holdout(model_dir)
    if holdout is not None:
        metrics["holdout"] = holdout
    return metrics


def find_truth(root: Path, explicit: Path | None) -> Path | None:
    """The explicit ground truth, else the phantom's ground_truth.parquet beside the curated
    archive (DATASET/curation.json "archive" -> its parent directory), else None."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise PhaseDataError(f"{explicit}: ground truth file not found")
        return Path(explicit)
    try:
        archive = json.loads((Path(root) / SETTINGS_FILE).read_text())["archive"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    candidate = Path(archive).parent / "ground_truth.parquet"
    return candidate if candidate.is_file() else None


def load_truth(path: Path) -> pd.DataFrame:
    """(series_uid, frame_index, is_arterial) rows of a phantom ground truth."""
    try:
        truth = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise PhaseDataError(f"{path}: unreadable ground truth ({err})") from err
    for column in ("series_uid", "frame_index", "is_arterial"):
        if column not in truth.columns:
            raise PhaseDataError(f"{path}: missing column {column!r}")
    return truth[["series_uid", "frame_index", "is_arterial"]]


def truth_metrics(
    kept: pd.DataFrame, chosen: np.ndarray, truth: pd.DataFrame, trained: set[str]
) -> dict | None:
    """Selection and classifier (threshold 0.5) metrics against `is_arterial`, over all matched
    frames and over the series the model was not trained on; None when nothing matches."""
    frames = kept.assign(selected=chosen)
    matched = frames.merge(truth, on=["series_uid", "frame_index"], how="inner")
    if matched.empty:
        return None
    unseen = matched[~matched["series_uid"].isin(trained)]
    result = {
        "frames_matched": len(matched),
        "arterial_frames": int(matched["is_arterial"].sum()),
        "selection": _selection_scores(matched),
        "classifier_at_0.5": _short(binary_metrics(matched["probability"], matched["is_arterial"])),
    }
    if len(unseen) and len(unseen) < len(matched):
        result["selection_unseen_series"] = _selection_scores(unseen)
    return result


def _selection_scores(frames: pd.DataFrame) -> dict:
    scores = binary_metrics(frames["selected"].astype(float), frames["is_arterial"])
    counts = {"selected": scores["tp"] + scores["fp"], "arterial": scores["positives"]}
    return {
        **_short(scores, ("precision", "recall", "accuracy")),
        **counts,
        "frames": len(frames),
        "series": int(frames["series_uid"].nunique()),
    }


def _short(metrics: dict, keep: tuple[str, ...] = ("precision", "recall", "accuracy", "roc_auc")):
    return {k: metrics[k] for k in keep}


def _training_series(model_dir: Path) -> set[str]:
    path = model_dir / LABELS_FILE
    if not path.is_file():
        return set()
    labels = pd.read_parquet(path, columns=["series_uid", "role"])
    return set(labels.loc[labels["role"] == "train", "series_uid"])


def _model_holdout(model_dir: Path) -> dict | None:
    path = model_dir / METRICS_FILE
    if not path.is_file():
        return None
    holdout = json.loads(path.read_text()).get("holdout")
    if not isinstance(holdout, dict):
        return None
    keep = ("precision", "recall", "accuracy", "roc_auc", "n", "positives")
    return {k: holdout[k] for k in keep if k in holdout}
