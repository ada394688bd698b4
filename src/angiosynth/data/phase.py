"""Labelled frames for the arterial-phase classifier (paper §2.2, §4.2).

Annotations name, for some series, the single representative arterial-phase frame an expert
picked (a CSV with columns ``series_uid`` and ``frame_index``, the 0-based position of the frame
in its series; the phantom writes one as ``annotations.csv``). They are matched to the stored
frames of a curated dataset by (series_uid, frame_index), and every frame of an annotated series
gets a label by this rule, applied in order:

1. the annotated frame is **positive**;
2. mask frames (``is_mask``: acquired before the contrast arrives) are **negative**;
3. frames within ``positive_window_s`` seconds of the annotated frame are **positive**;
4. frames at least ``negative_gap_s`` seconds away from the annotated frame are **negative**;
5. everything in between is **ambiguous** and not used for training or evaluation.

Time is the frame's ``time_s`` in frames.parquet. Frames of series without annotations are not
labelled. A series with several annotated frames measures distances to the nearest of them.

Defaults: ``positive_window_s = 0.5`` and ``negative_gap_s = 1.0`` (`LabelRule()`). The rule
written in the brief of the paper's method, one positive per series and negatives >= 1.5 s away
(`LabelRule.paper()`), leaves the frames just before and after the arterial phase (partly
filled arteries, capillary blush) out of training, and a classifier trained on it scores them
as arterial: on the phantom (24 patients, 43 training series) it selected frames with
precision 0.62-0.73 against the true arterial phase, the widened rule 0.86-0.90 at equal
recall. The phantom's arterial phase spans about -0.7 to +0.8 s around the annotated frame, so
+-0.5 s is 95 % arterial and frames >= 1.0 s away 99 % non-arterial.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from angiosynth.curation.arterial import NEGATIVE, POSITIVE
from angiosynth.errors import AngiosynthError

#: Label values in the `label` column of `label_frames`.
AMBIGUOUS = -1  # frames the label rule leaves unused (POSITIVE, NEGATIVE: curation.arterial)
ANNOTATION_COLUMNS = ("series_uid", "frame_index")
_FRAME_COLUMNS = ("frame_id", "series_uid", "patient_id", "split", "frame_index", "time_s",
                  "is_mask")  # fmt: skip


class PhaseDataError(AngiosynthError, ValueError):
    """Annotations or labelled frames that cannot be used (one-line message naming the file)."""


@dataclass(frozen=True)
class LabelRule:
    """Time windows of the label rule (module docstring).

    Attributes:
        positive_window_s: non-mask frames this close to an annotated frame are positive too
            (0 = only the annotated frame).
        negative_gap_s: frames at least this far from every annotated frame are negative.
    """

    positive_window_s: float = 0.5
    negative_gap_s: float = 1.0

    @classmethod
    def paper(cls) -> LabelRule:
        """One positive per series (the annotated frame); negatives >= 1.5 s away."""
        return cls(positive_window_s=0.0, negative_gap_s=1.5)

    def __post_init__(self) -> None:
        if self.positive_window_s < 0:
            raise ValueError(f"positive window must be >= 0 s, got {self.positive_window_s}")
        if self.negative_gap_s <= self.positive_window_s:
            raise ValueError(
                f"negative gap ({self.negative_gap_s} s) must exceed the positive window "
                f"({self.positive_window_s} s)"
            )

    def describe(self) -> str:
        """The rule in one sentence (written into a model's config.json)."""
        positive = "the annotated frame"
        if self.positive_window_s > 0:
            positive += f" and non-mask frames within {self.positive_window_s:g} s of it"
        return (
            f"positive: {positive}; negative: mask frames and frames at least "
            f"{self.negative_gap_s:g} s from the annotated frame; other frames unused"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "description": self.describe()}


@dataclass(frozen=True)
class LabelSummary:
    """How the annotations matched the dataset."""

    annotations: int
    matched_annotations: int
    annotated_series: int
    unmatched_series: int
    untimed_series: int
    positives: int
    negatives: int
    ambiguous: int


def read_annotations(path: Path) -> pd.DataFrame:
    """Reads an annotations CSV: (series_uid: str, frame_index: int) rows.

    Raises:
        PhaseDataError: the file is missing or unreadable, lacks a column, or has bad indices.
    """
    path = Path(path)
    if not path.is_file():
        raise PhaseDataError(f"{path}: annotations file not found")
    try:
        table = pd.read_csv(path, dtype={"series_uid": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise PhaseDataError(f"{path}: cannot read CSV ({err})") from err
    for column in ANNOTATION_COLUMNS:
        if column not in table.columns:
            raise PhaseDataError(f"{path}: missing column {column!r}")
    index = pd.to_numeric(table["frame_index"], errors="coerce")
    if index.isna().any() or (index < 0).any() or (index % 1 != 0).any():
        raise PhaseDataError(f"{path}: frame_index must hold non-negative integers")
    return pd.DataFrame(
        {"series_uid": table["series_uid"].astype(str), "frame_index": index.astype(np.int64)}
    ).drop_duplicates()


def label_frames(
    frames: pd.DataFrame, annotations: pd.DataFrame, rule: LabelRule | None = None
) -> tuple[pd.DataFrame, LabelSummary]:
    """Labels the frames of annotated series by the module's rule.

    Args:
        frames: frames.parquet rows (frame_id, series_uid, patient_id, split, frame_index,
            time_s, is_mask at least).
        annotations: (series_uid, frame_index) rows, as from `read_annotations`.
        rule: time windows (default `LabelRule()`: positives +-0.5 s, negatives >= 1.0 s).

    Returns:
        The frames of annotated series (all their columns) plus `dt_s` (seconds to the nearest
        annotated frame) and `label` (POSITIVE, NEGATIVE or AMBIGUOUS), and the match summary.
        Series whose frames all share one time stamp (no frame timing) are left out.
    """
    rule = rule or LabelRule()
    missing = [c for c in _FRAME_COLUMNS if c not in frames.columns]
    if missing:
        raise PhaseDataError(f"frames table: missing column {missing[0]!r}")
    keys = ["series_uid", "frame_index"]
    marked = annotations[keys].merge(frames[[*keys, "time_s"]], on=keys, how="inner")
    annotated = frames[frames["series_uid"].isin(marked["series_uid"])]
    spread = annotated.groupby("series_uid")["time_s"].agg(lambda t: t.max() - t.min())
    untimed = set(spread.index[spread <= 0])
    annotated = annotated[~annotated["series_uid"].isin(untimed)]
    labelled = annotated.assign(dt_s=_seconds_to_nearest(annotated, marked))
    labelled["label"] = _labels(labelled, marked, rule).astype(np.int8)
    counts = labelled["label"].value_counts()
    summary = LabelSummary(
        annotations=len(annotations),
        matched_annotations=int(marked["series_uid"].isin(labelled["series_uid"]).sum()),
        annotated_series=int(labelled["series_uid"].nunique()),
        unmatched_series=int((~annotations["series_uid"].isin(marked["series_uid"])).sum()),
        untimed_series=len(untimed),
        positives=int(counts.get(POSITIVE, 0)),
        negatives=int(counts.get(NEGATIVE, 0)),
        ambiguous=int(counts.get(AMBIGUOUS, 0)),
    )
    return labelled.reset_index(drop=True), summary


def _seconds_to_nearest(frames: pd.DataFrame, marked: pd.DataFrame) -> np.ndarray:
    """(N,) seconds from each frame to the nearest annotated frame of its series."""
    rows = frames[["series_uid", "time_s"]].assign(_row=np.arange(len(frames)))
    pairs = rows.merge(marked[["series_uid", "time_s"]], on="series_uid", suffixes=("", "_at"))
    pairs["dt"] = (pairs["time_s"] - pairs["time_s_at"]).abs()
    nearest = pairs.groupby("_row")["dt"].min()
    return nearest.reindex(np.arange(len(frames))).to_numpy(dtype=np.float64)


def _labels(labelled: pd.DataFrame, marked: pd.DataFrame, rule: LabelRule) -> np.ndarray:
    """The rule of the module docstring, first match wins (the order of `np.select`)."""
    marked_keys = set(zip(marked["series_uid"], marked["frame_index"], strict=True))
    keys = zip(labelled["series_uid"], labelled["frame_index"], strict=True)
    is_marked = np.fromiter((key in marked_keys for key in keys), bool, len(labelled))
    dt, is_mask = labelled["dt_s"].to_numpy(), labelled["is_mask"].to_numpy(dtype=bool)
    eps = 1e-6  # time stamps are sums of frame times: compare windows with a little slack
    conditions = [
        is_marked,
        is_mask,
        dt <= rule.positive_window_s + eps,
        dt >= rule.negative_gap_s - eps,
    ]
    return np.select(conditions, [POSITIVE, NEGATIVE, POSITIVE, NEGATIVE], AMBIGUOUS)


def holdout_split(
    labelled: pd.DataFrame, seed: int, share: float = 0.2, min_series: int = 5
) -> tuple[np.ndarray, dict]:
    """Patient-disjoint training / holdout split of labelled frames.

    The dataset's own split is used when it leaves enough annotated series on both sides:
    train patients train, val and test patients are the holdout. Otherwise annotated patients
    are shuffled with `seed` and `share` of them (at least one, never all) form the holdout.

    Args:
        labelled: frames with patient_id, series_uid and split columns.
        seed: seed of the fallback split.
        share: holdout share of annotated patients in the fallback split.
        min_series: annotated series each side needs for the dataset split to be used.

    Returns:
        A boolean array (True = holdout) aligned with `labelled`, and a description.
    """
    per_series = labelled.drop_duplicates("series_uid")
    in_holdout = per_series["split"].isin(["val", "test"])
    if min(int(in_holdout.sum()), int((~in_holdout).sum())) >= min_series:
        holdout = labelled["split"].isin(["val", "test"]).to_numpy()
        return holdout, _describe_holdout("dataset split (val + test patients)", labelled, holdout)
    patients = np.array(sorted(per_series["patient_id"].unique()))
    if len(patients) < 2:
        raise PhaseDataError(
            "annotations: a patient-disjoint holdout needs annotated series of at least 2 patients"
        )
    rng = np.random.default_rng(seed)
    n_holdout = min(max(1, round(share * len(patients))), len(patients) - 1)
    chosen = rng.permutation(patients)[:n_holdout]
    holdout = labelled["patient_id"].isin(chosen).to_numpy()
    source = f"seeded patient split ({share:.0%} of annotated patients, seed {seed})"
    return holdout, _describe_holdout(source, labelled, holdout)


def _describe_holdout(source: str, labelled: pd.DataFrame, holdout: np.ndarray) -> dict:
    def side(rows: pd.DataFrame) -> dict:
        return {
            "patients": int(rows["patient_id"].nunique()),
            "series": int(rows["series_uid"].nunique()),
            "positives": int((rows["label"] == POSITIVE).sum()),
            "negatives": int((rows["label"] == NEGATIVE).sum()),
        }

    used = labelled["label"].to_numpy() != AMBIGUOUS
    return {
        "source": source,
        "train": side(labelled[~holdout & used]),
        "holdout": side(labelled[holdout & used]),
    }
