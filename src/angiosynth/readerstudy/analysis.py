"""Reader-study analysis (paper §2.4): reading and checking ratings, Tables 2-4 and the ICC.

Ratings come in long format, one row per image x rater x segment (`reader-study export`):
`image_id, condition, rater, segment, score, external`, where segment is proximal / medium /
peripheral, score is 1-5, NP (not present) or NA (not applicable), and external (0/1) marks that
the rater flagged the image as external circulation. The rules applied are listed in `RULES`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from angiosynth.conditions import CONDITIONS
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.errors import AngiosynthError, InputNotFoundError

SEGMENTS = ("proximal", "medium", "peripheral")
REGIONS = (*SEGMENTS, "overall")
NOT_RATABLE = ("NP", "NA")
RATING_COLUMNS = ("image_id", "condition", "rater", "segment", "score", "external")
SCREENING_COLUMNS = ("image_id", "condition", "keep")
ALL_RATERS = "all"
TABLE2_COLUMNS = (
    "condition", "n_screened", "n_keep", "retention_pct", "n_scored",
    "proximal_na", "medium_na", "peripheral_na", "external_circulation",
)  # fmt: skip
TABLE4_COLUMNS = (
    "region", "raters", "n_images", "k", "icc_2_1", "icc_2_1_low", "icc_2_1_high",
    "icc_2_k", "icc_2_k_low", "icc_2_k_high",
)  # fmt: skip
RULES = (
    "A rater who flags an image as external circulation (external = 1 on any of that rater's "
    "rows of the image) is masked for that image: none of that rater's scores of the image "
    "are used.",
    "Segment score of an image: mean over raters of the numeric scores (1-5) left after "
    "masking; NP, NA and masked ratings are ignored.",
    "Overall score of an image: mean of its available segment scores.",
    "Images without any ratable segment (no numeric score left after masking) are excluded "
    "from Table 3 and counted.",
    "Table 2: N_keep = images kept in screening.csv (without a screening file: the rated "
    "images); N_scored = rated images with at least one ratable segment; <segment>_na = images "
    "whose segment is NP or NA on every row of every rater who rated it; external_circulation "
    "= images flagged external by every rater who rated them (consistently).",
    "Table 3: mean and sample SD (ddof = 1) over images; a segment's statistics use the "
    "images that have a score for that segment.",
    "Table 4: ICC(2,1) and ICC(2,k) (Shrout & Fleiss 1979; two-way random effects, absolute "
    "agreement), 95 % F-distribution confidence intervals. Complete cases: an image enters a "
    "region only when every rater of the set has a score for it after masking; for 'overall' a "
    "rater's value is the mean of that rater's available segment scores of the image.",
)


class RatingsError(AngiosynthError, ValueError):
    """A ratings or screening file is malformed; the message names file, line and column."""


def _error(path: Path, line: int, column: str, problem: str) -> RatingsError:
    return RatingsError(f"{path}, line {line}, column {column}: {problem}")


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Reads a CSV as stripped strings (NA stays a string) and checks its header."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise RatingsError(f"{path}, line 1: empty file, expected columns "
                           f"{', '.join(columns)}") from err  # fmt: skip
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RatingsError(f"{path}: not a CSV file ({' '.join(str(err).split())})") from err
    table.columns = [str(name).strip() for name in table.columns]
    missing = [name for name in columns if name not in table.columns]
    if missing:
        raise _error(path, 1, ", ".join(missing), "missing from the header")
    table = table[list(columns)].apply(lambda values: values.str.strip())
    table["line"] = np.arange(len(table)) + 2
    return table


def _check(table: pd.DataFrame, bad: pd.Series, path: Path, column: str, problem: str) -> None:
    """Raises a RatingsError for the first row where `bad` holds."""
    if bad.any():
        row = table[bad].iloc[0]
        raise _error(path, int(row["line"]), column, f"{row[column]!r} {problem}")


def _check_common(table: pd.DataFrame, path: Path) -> None:
    for column in ("image_id", "condition"):
        _check(table, table[column] == "", path, column, "is empty")
    known = ", ".join(CONDITIONS)
    _check(table, ~table["condition"].isin(CONDITIONS), path, "condition", f"is not {known}")


def _check_duplicates(table: pd.DataFrame, keys: list[str], path: Path) -> None:
    repeated = table.duplicated(keys, keep="first")
    if repeated.any():
        row = table[repeated].iloc[0]
        first = table[(table[keys] == row[keys]).all(axis=1)].iloc[0]
        raise _error(path, int(row["line"]), "/".join(keys),
                     f"duplicate of line {int(first['line'])}")  # fmt: skip


def _check_one_condition(table: pd.DataFrame, path: Path) -> None:
    first = table.groupby("image_id")["condition"].transform("first")
    _check(table, table["condition"] != first, path, "condition",
           "differs from the image's condition on an earlier line")  # fmt: skip


def read_ratings(path: Path) -> pd.DataFrame:
    """Reads and checks a long-format ratings CSV.

    Args:
        path: CSV with columns image_id, condition, rater, segment, score, external.

    Returns:
        One row per image x rater x segment: image_id, condition, rater, segment, label
        ("1".."5", "NP" or "NA"), score (float, NaN for NP/NA), external (bool), line (1-based
        line in the file, the header being line 1).

    Raises:
        RatingsError: naming the file, line and column of the first problem.
        InputNotFoundError: when the file does not exist.
    """
    table = _read_csv(path, RATING_COLUMNS)
    if table.empty:
        raise RatingsError(f"{path}, line 2: no ratings below the header")
    _check_common(table, path)
    _check(table, table["rater"] == "", path, "rater", "is empty")
    segments = ", ".join(SEGMENTS)
    _check(table, ~table["segment"].isin(SEGMENTS), path, "segment", f"is not {segments}")
    label = table["score"].str.upper()
    numeric = pd.to_numeric(label, errors="coerce")
    valid = numeric.isin(range(1, 6)) | label.isin(NOT_RATABLE)
    _check(table, ~valid, path, "score", "is not 1-5, NP or NA")
    _check(table, ~table["external"].isin(("0", "1")), path, "external", "is not 0 or 1")
    _check_duplicates(table, ["image_id", "rater", "segment"], path)
    _check_one_condition(table, path)
    table["label"] = label.where(numeric.isna(), numeric.astype("Int64").astype(str))
    table["score"] = numeric.astype(float)
    table["external"] = table["external"] == "1"
    return table[["image_id", "condition", "rater", "segment", "label", "score", "external",
                  "line"]]  # fmt: skip


def read_screening(path: Path) -> pd.DataFrame:
    """Reads and checks a screening CSV (image_id, condition, keep 0/1).

    Returns:
        image_id, condition, keep (bool), line.

    Raises:
        RatingsError: naming the file, line and column of the first problem.
    """
    table = _read_csv(path, SCREENING_COLUMNS)
    _check_common(table, path)
    _check(table, ~table["keep"].isin(("0", "1")), path, "keep", "is not 0 or 1")
    _check_duplicates(table, ["image_id"], path)
    table["keep"] = table["keep"] == "1"
    return table


def rater_sets(ratings: pd.DataFrame, subset: list[str], subset_name: str) -> dict[str, list[str]]:
    """The rater sets of Table 4: all raters, and the subset when one is given.

    Raises:
        RatingsError: for unknown subset raters, fewer than 2 of them, or a clashing label.
    """
    raters = sorted(ratings["rater"].unique())
    sets = {ALL_RATERS: raters}
    chosen = list(dict.fromkeys(subset))
    if not chosen:
        return sets
    unknown = [rater for rater in chosen if rater not in raters]
    if unknown:
        raise RatingsError(f"--subset: unknown rater(s) {', '.join(unknown)} "
                           f"(raters: {', '.join(raters)})")  # fmt: skip
    if len(chosen) < 2:
        raise RatingsError("--subset: an ICC needs at least 2 raters")
    if subset_name == ALL_RATERS:
        raise RatingsError(f"--subset-name: {ALL_RATERS!r} is the label of all raters")
    sets[subset_name] = chosen
    return sets


def usable_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """The numeric ratings that enter the analysis: NP/NA dropped, external raters masked.

    A rater who flags an image external on any of the image's rows is masked for the whole
    image.
    """
    flagged = ratings.groupby(["image_id", "rater"])["external"].transform("any")
    return ratings[ratings["score"].notna() & ~flagged]


def image_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """Image-wise scores: one row per rated image (index image_id).

    Returns:
        condition, proximal, medium, peripheral (mean over raters of the usable scores, NaN
        when none) and overall (mean of the available segment scores, NaN when none).
    """
    usable = usable_ratings(ratings)
    segments = usable.pivot_table(
        index="image_id", columns="segment", values="score", aggfunc="mean"
    )
    conditions = ratings.groupby("image_id")["condition"].first()
    scores = segments.reindex(index=conditions.index, columns=list(SEGMENTS))
    scores["overall"] = scores[list(SEGMENTS)].mean(axis=1)
    scores.insert(0, "condition", conditions)
    scores.columns.name = None
    return scores


def _image_flags(ratings: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per image, flags named after the Table 2 columns they count (summed per condition).

    <segment>_na: NP/NA on every row of the segment; external_circulation: every rater who
    rated the image flagged it; n_scored: the image has an overall score.
    """
    not_ratable = ratings.assign(na=ratings["score"].isna())
    na = not_ratable.pivot_table(index="image_id", columns="segment", values="na", aggfunc="all")
    na = na.reindex(index=scores.index, columns=list(SEGMENTS)).fillna(False).astype(bool)
    flagged = ratings.groupby(["image_id", "rater"])["external"].any()
    flags = na.add_suffix("_na")
    flags["external_circulation"] = flagged.groupby("image_id").all().reindex(scores.index)
    flags["n_scored"] = scores["overall"].notna()
    flags["condition"] = scores["condition"]
    return flags


def _kept_counts(screening: pd.DataFrame | None, flags: pd.DataFrame) -> pd.DataFrame:
    """n_screened and n_keep per condition; without screening, n_keep counts rated images."""
    if screening is None:
        return pd.DataFrame({"n_keep": flags.groupby("condition").size()})
    by_condition = screening.groupby("condition")["keep"]
    return pd.DataFrame({"n_screened": by_condition.size(), "n_keep": by_condition.sum()})


def table2(ratings: pd.DataFrame, screening: pd.DataFrame | None) -> pd.DataFrame:
    """Table 2: screening retention and non-ratable counts per condition, then "All".

    Without a screening table, n_keep is the number of rated images and n_screened and
    retention_pct are empty.
    """
    flags = _image_flags(ratings, image_scores(ratings))
    counts = pd.concat([_kept_counts(screening, flags), flags.groupby("condition").sum()], axis=1)
    counts = counts.reindex(list(CONDITIONS)).fillna(0).astype("Int64")
    counts.loc["All"] = counts.sum()
    if screening is None:
        counts["n_screened"] = pd.array([pd.NA] * len(counts), dtype="Int64")
    counts["retention_pct"] = (100 * counts["n_keep"] / counts["n_screened"]).round(1)
    return counts.rename_axis("condition").reset_index()[list(TABLE2_COLUMNS)]


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    values = values.dropna()
    sd = values.std(ddof=1) if len(values) > 1 else np.nan
    return float(values.mean()) if len(values) else np.nan, float(sd)


def table3(scores: pd.DataFrame) -> pd.DataFrame:
    """Table 3: per condition (then "All") n_images and mean / SD of each region's score.

    Only images with an overall score (at least one ratable segment) are counted.
    """
    scored = scores[scores["overall"].notna()]
    groups = [(condition, scored[scored["condition"] == condition]) for condition in CONDITIONS]
    rows = []
    for name, group in [*groups, ("All", scored)]:
        row: dict[str, object] = {"condition": name, "n_images": len(group)}
        for region in ("overall", *SEGMENTS):
            row[f"{region}_mean"], row[f"{region}_sd"] = _mean_sd(group[region])
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Icc:
    """ICC(2,1) and ICC(2,k) with the bounds of their confidence intervals."""

    icc_2_1: float
    icc_2_1_low: float
    icc_2_1_high: float
    icc_2_k: float
    icc_2_k_low: float
    icc_2_k_high: float


def _spearman_brown(single: float, k: int) -> float:
    """The reliability of the mean of k raters from that of one rater."""
    return k * single / (1 + (k - 1) * single)


def _icc2_interval(
    icc: float, ms_rows: float, ms_cols: float, ms_error: float, n: int, k: int, level: float
) -> tuple[float, float]:
    """Shrout & Fleiss (1979) confidence interval of ICC(2,1) (Satterthwaite df)."""
    f_raters = ms_cols / ms_error
    spread = n * (1 + (k - 1) * icc) - k * icc
    df = (k - 1) * (n - 1) * (k * icc * f_raters + spread) ** 2
    df /= (n - 1) * k**2 * icc**2 * f_raters**2 + spread**2
    tail = 1 - (1 - level) / 2
    f_low = stats.f.ppf(tail, n - 1, df)
    f_high = stats.f.ppf(tail, df, n - 1)
    pooled = k * ms_cols + (k * n - k - n) * ms_error
    low = n * (ms_rows - f_low * ms_error) / (f_low * pooled + n * ms_rows)
    high = n * (f_high * ms_rows - ms_error) / (pooled + n * f_high * ms_rows)
    return float(low), float(high)


def icc2(matrix: np.ndarray, level: float = 0.95) -> Icc:
    """ICC(2,1) and ICC(2,k) of a complete targets x raters matrix (two-way ANOVA).

    Two-way random effects, absolute agreement (Shrout & Fleiss 1979 ICC(2,1) / ICC(2,k),
    McGraw & Wong 1996 ICC(A,1) / ICC(A,k)); the ICC(2,k) bounds are the ICC(2,1) bounds
    stepped up with Spearman-Brown. Fewer than 2 targets or raters give NaN.
    """
    matrix = np.asarray(matrix, dtype=float)
    n, k = matrix.shape
    if n < 2 or k < 2:
        return Icc(*[np.nan] * 6)
    grand = matrix.mean()
    ss_rows = k * np.sum((matrix.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((matrix.mean(axis=0) - grand) ** 2)
    ss_error = np.sum((matrix - grand) ** 2) - ss_rows - ss_cols
    ms_rows, ms_cols = ss_rows / (n - 1), ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rater_term = k * (ms_cols - ms_error) / n
        single = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error + rater_term)
        average = (ms_rows - ms_error) / (ms_rows + (ms_cols - ms_error) / n)
        low, high = _icc2_interval(single, ms_rows, ms_cols, ms_error, n, k, level)
        return Icc(float(single), low, high, float(average),
                   _spearman_brown(low, k), _spearman_brown(high, k))  # fmt: skip


def rater_matrix(ratings: pd.DataFrame, region: str, raters: list[str]) -> pd.DataFrame:
    """Images x raters of usable scores for one region, complete cases only.

    For "overall" a rater's value is the mean of that rater's usable segment scores of the
    image. Images lacking a value for any rater of `raters` are dropped.
    """
    usable = usable_ratings(ratings)
    if region != "overall":
        usable = usable[usable["segment"] == region]
    values = usable.groupby(["image_id", "rater"])["score"].mean().unstack("rater")
    return values.reindex(columns=raters).dropna()


def table4(ratings: pd.DataFrame, sets: dict[str, list[str]]) -> pd.DataFrame:
    """Table 4: ICC(2,1) and ICC(2,k) with 95 % CIs per rater set and region."""
    rows = []
    for label, raters in sets.items():
        for region in REGIONS:
            matrix = rater_matrix(ratings, region, raters)
            icc = icc2(matrix.to_numpy())
            rows.append({"region": region, "raters": label, "n_images": len(matrix),
                         "k": len(raters), **asdict(icc)})  # fmt: skip
    return pd.DataFrame(rows, columns=list(TABLE4_COLUMNS))


def read_prevalence(dataset: Path) -> dict[str, float]:
    """Share (%) of all arterial-phase frames (all splits) in each condition, as Table 1.

    Raises:
        DatasetError: when DATASET is not a curated dataset or has no arterial selection.
    """
    arterial = CuratedDataset(dataset).arterial()
    share = arterial["view"].value_counts() / max(len(arterial), 1) * 100
    return {condition: float(share.get(condition, 0.0)) for condition in CONDITIONS}


@dataclass
class ReaderStudyAnalysis:
    """Everything the tables, figures and report are drawn from.

    Attributes:
        ratings: the checked long-format ratings (`read_ratings`).
        scores: image-wise scores (`image_scores`).
        table2: screening and non-ratable counts.
        table3: image-wise scores per condition.
        table4: inter-rater reliability.
        rater_sets: raters of each Table 4 set.
        screening: the screening table, or None.
        prevalence: condition prevalence (%) in the curated data, or None.
        sources: input paths, for the record.
    """

    ratings: pd.DataFrame
    scores: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    table4: pd.DataFrame
    rater_sets: dict[str, list[str]]
    screening: pd.DataFrame | None = None
    prevalence: dict[str, float] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Images rated, scored and excluded; raters and ratings."""
        scored = int(self.scores["overall"].notna().sum())
        counts = {
            "images_rated": len(self.scores),
            "images_scored": scored,
            "images_excluded_no_ratable_segment": len(self.scores) - scored,
            "raters": int(self.ratings["rater"].nunique()),
            "rating_rows": len(self.ratings),
            "usable_ratings": len(usable_ratings(self.ratings)),
        }
        if self.screening is not None:
            kept = self.screening.loc[self.screening["keep"], "image_id"]
            counts["images_screened"] = len(self.screening)
            counts["images_kept"] = len(kept)
            counts["images_rated_but_not_kept"] = int((~self.scores.index.isin(kept)).sum())
        return counts


def analyze(
    ratings: pd.DataFrame,
    screening: pd.DataFrame | None = None,
    subset: list[str] | None = None,
    subset_name: str = "subset",
    prevalence: dict[str, float] | None = None,
    sources: dict[str, str] | None = None,
) -> ReaderStudyAnalysis:
    """Computes Tables 2-4 from checked ratings (and screening, when given).

    Args:
        ratings: checked ratings (`read_ratings`).
        screening: checked screening table (`read_screening`), or None.
        subset: raters of the Table 4 subset (none: all raters only).
        subset_name: label of the subset rows in Table 4.
        prevalence: condition prevalence (%) for Fig. 4e (`read_prevalence`), or None.
        sources: input paths, for the record.
    """
    sets = rater_sets(ratings, subset or [], subset_name)
    scores = image_scores(ratings)
    return ReaderStudyAnalysis(
        ratings=ratings,
        scores=scores,
        table2=table2(ratings, screening),
        table3=table3(scores),
        table4=table4(ratings, sets),
        rater_sets=sets,
        screening=screening,
        prevalence=prevalence,
        sources=sources or {},
    )
