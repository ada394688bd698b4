"""Arterial-phase frame selection (paper §2.2): which frames of each series enter the dataset.

Every stored frame of the kept (anterior / posterior) series is scored by a trained
arterial-phase classifier (a `FrameScorer`, `training.phase.PhaseScorer`) and, per series, the
frames with probability >= a threshold (or the K most probable) are kept in
DATASET/arterial.parquet with their prompt (default: probability >= 0.5, a logit within the
model's holdout-calibrated margin of the series' highest, and one contiguous run of frames
around the most probable one, see `select_mask` and `calibrate_margin`); all scores go to
DATASET/phase_scores.parquet. With the phantom's ground truth at hand, precision / recall /
accuracy against `is_arterial` go to DATASET/phase_metrics.json, and the curation report is
redrawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from angiosynth.conditions import prompt_for
from angiosynth.curation import report
from angiosynth.curation.dataset import ARTERIAL_FILE, SETTINGS_FILE, CuratedDataset, DatasetError
from angiosynth.errors import OptionError
from angiosynth.progress import Progress
from angiosynth.runfiles import METRICS_FILE, write_json_atomic, write_table_atomic

PHASE_SCORES_FILE = "phase_scores.parquet"
PHASE_METRICS_FILE = report.PHASE_METRICS_FILE
#: The labelled frames of a phase model directory, with their role (train / holdout).
LABELS_FILE = "labels.parquet"
#: Per-series logit margin of `select_mask` for models without a calibrated one (trained before
#: `calibrate_margin`): with the contiguous run, the most accurate of 4-6 on a phantom archive
#: other than the demo's (seed 1, 12 patients: accuracy 0.974).
DEFAULT_MARGIN = 5.5
#: `SelectOptions.margin` value that takes the model's calibrated margin.
AUTO_MARGIN = "auto"
#: Positive / negative labels of the phase classifier's frames.
POSITIVE, NEGATIVE = 1, 0
KEPT_CIRCULATIONS = ("anterior", "posterior")
ARTERIAL_COLUMNS = [
    "frame_id", "series_uid", "patient_id", "split", "circulation", "plane", "primary_angle",
    "secondary_angle", "view", "probability", "prompt",
]  # fmt: skip


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
        truth: phantom ground truth (default: found through DATASET/curation.json).
    """

    per_series: int | None = None
    threshold: float = 0.5
    margin: float | str | None = AUTO_MARGIN
    contiguous: bool = True
    truth: Path | None = None

    def __post_init__(self) -> None:
        if self.per_series is not None and self.per_series < 1:
            raise OptionError(f"--per-series must be >= 1, got {self.per_series}")
        if not 0 <= self.threshold <= 1:
            raise OptionError(f"--threshold must be in [0, 1], got {self.threshold}")
        margin_ok = self.margin in (AUTO_MARGIN, None) or (
            not isinstance(self.margin, str) and self.margin >= 0
        )
        if not margin_ok:
            raise OptionError(f"--margin must be a number >= 0 or auto, got {self.margin!r}")

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


class FrameScorer(Protocol):
    """A trained arterial-phase classifier as selection sees it (`training.phase.PhaseScorer`).

    Attributes:
        model_dir: its model directory (config.json, metrics.json, labels.parquet).
        config: its config.json ("selection" holds the calibrated margin).
    """

    model_dir: Path
    config: dict

    def score(
        self, dataset: CuratedDataset, frame_ids: np.ndarray, progress: Progress | None
    ) -> np.ndarray:
        """(N,) arterial probabilities of the stored frames `frame_ids`."""


def kept_frames(dataset: CuratedDataset) -> pd.DataFrame:
    """The stored frames of the kept (anterior / posterior) series.

    Raises:
        DatasetError: there are none.
    """
    kept = dataset.frames[dataset.frames["circulation"].isin(KEPT_CIRCULATIONS)]
    if kept.empty:
        raise DatasetError(f"{dataset.root}: no stored frames of anterior/posterior series")
    return kept.reset_index(drop=True)


def select_arterial(
    dataset_root: Path,
    scorer: FrameScorer,
    options: SelectOptions | None = None,
    progress: Progress | None = None,
) -> SelectionResult:
    """Scores the kept series' frames and writes DATASET/arterial.parquet (module docstring).

    Raises:
        DatasetError: not a curated dataset, no kept frames, or an explicit ground truth that
            is unreadable or matches no frame.
    """
    options = resolve_margin(options or SelectOptions(), scorer.config)
    dataset = CuratedDataset(dataset_root)
    kept = kept_frames(dataset)
    kept["probability"] = scorer.score(dataset, kept["frame_id"].to_numpy(), progress)
    chosen = select_mask(
        kept, options.per_series, options.threshold, options.margin, options.contiguous
    )
    table = arterial_table(kept[chosen])
    write_table_atomic(kept[["frame_id", "probability"]], dataset.root / PHASE_SCORES_FILE)
    write_table_atomic(table, dataset.root / ARTERIAL_FILE)
    metrics = _selection_metrics(dataset.root, Path(scorer.model_dir), kept, chosen, options)
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
            raise DatasetError(f"{truth_path}: no frame matches the dataset")
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
            raise DatasetError(f"{explicit}: ground truth file not found")
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
        raise DatasetError(f"{path}: unreadable ground truth ({err})") from err
    for column in ("series_uid", "frame_index", "is_arterial"):
        if column not in truth.columns:
            raise DatasetError(f"{path}: missing column {column!r}")
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
