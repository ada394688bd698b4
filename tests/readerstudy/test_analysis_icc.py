"""ICC(2,1) / ICC(2,k): textbook values, pingouin cross-check, complete cases (Table 4)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin
import pytest

from angiosynth.readerstudy.analysis import (
    RATING_COLUMNS,
    TABLE4_COLUMNS,
    RatingsError,
    icc2,
    rater_matrix,
    rater_sets,
    read_ratings,
    table4,
)

#: Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def test_shrout_fleiss_table2() -> None:
    icc = icc2(SHROUT_FLEISS)
    assert round(icc.icc_2_1, 2) == 0.29
    assert round(icc.icc_2_k, 2) == 0.62
    assert icc.icc_2_1_low < icc.icc_2_1 < icc.icc_2_1_high
    assert icc.icc_2_k_low < icc.icc_2_k < icc.icc_2_k_high


def _pingouin_rows(matrix: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """pingouin's ICC2 / ICC2k rows (named ICC(A,1) / ICC(A,k) from 0.7), unrounded."""
    monkeypatch.delitem(pingouin.options, "round.column.CI95", raising=False)
    n, k = matrix.shape
    long = pd.DataFrame({"target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n),
                         "score": matrix.ravel()})  # fmt: skip
    table = pingouin.intraclass_corr(long, "target", "rater", "score").set_index("Type")
    names = ["ICC2", "ICC2k"] if "ICC2" in table.index else ["ICC(A,1)", "ICC(A,k)"]
    return table.loc[names]


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside pingouin, with pandas 3
@pytest.mark.parametrize(("n", "k", "seed"), [(30, 4, 0), (12, 3, 1), (50, 2, 2)])
def test_matches_pingouin(n: int, k: int, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n, 1)) + rng.normal(size=(1, k)) + rng.normal(size=(n, k))
    single, average = _pingouin_rows(matrix, monkeypatch).itertuples()
    icc = icc2(matrix)
    assert icc.icc_2_1 == pytest.approx(single.ICC, abs=1e-6)
    assert icc.icc_2_k == pytest.approx(average.ICC, abs=1e-6)
    assert [icc.icc_2_1_low, icc.icc_2_1_high] == pytest.approx(single.CI95, abs=1e-6)
    assert [icc.icc_2_k_low, icc.icc_2_k_high] == pytest.approx(average.CI95, abs=1e-6)


def test_too_few_targets_or_raters_give_nan() -> None:
    assert np.isnan(icc2(np.ones((1, 3))).icc_2_1)
    assert np.isnan(icc2(np.ones((5, 1))).icc_2_k)


# (image, rater, external, proximal, medium, peripheral)
RATINGS = [
    ("i1", "A", 0, "4", "2", "NP"), ("i1", "B", 0, "5", "3", "NP"), ("i1", "C", 0, "4", "3", "1"),
    ("i2", "A", 0, "3", "2", "NP"), ("i2", "B", 0, "3", "3", "NP"), ("i2", "C", 1, "5", "5", "5"),
    ("i3", "A", 0, "5", "2", "NP"), ("i3", "B", 0, "4", "3", "NP"), ("i3", "C", 0, "2", "4", "2"),
    ("i4", "A", 0, "2", "2", "NP"), ("i4", "B", 0, "NP", "3", "NP"), ("i4", "C", 0, "3", "3", "3"),
]  # fmt: skip


@pytest.fixture
def ratings(tmp_path: Path) -> pd.DataFrame:
    rows = [
        (image, "AC A", rater, segment, score, external)
        for image, rater, external, *scores in RATINGS
        for segment, score in zip(("proximal", "medium", "peripheral"), scores, strict=True)
    ]
    path = tmp_path / "ratings.csv"
    pd.DataFrame(rows, columns=list(RATING_COLUMNS)).to_csv(path, index=False)
    return read_ratings(path)


def test_complete_cases_per_region(ratings: pd.DataFrame) -> None:
    proximal = rater_matrix(ratings, "proximal", ["A", "B"])
    assert proximal.index.tolist() == ["i1", "i2", "i3"]  # B has NP for i4
    assert proximal.to_numpy().tolist() == [[4, 5], [3, 3], [5, 4]]
    assert rater_matrix(ratings, "peripheral", ["A", "B"]).empty
    # C is masked on i2 (external), so i2 drops out for the three raters
    assert rater_matrix(ratings, "medium", ["A", "B", "C"]).index.tolist() == ["i1", "i3", "i4"]


def test_overall_is_each_raters_mean_of_available_segments(ratings: pd.DataFrame) -> None:
    overall = rater_matrix(ratings, "overall", ["A", "B"])
    assert overall.to_numpy().tolist() == [[3.0, 4.0], [2.5, 3.0], [3.5, 3.5], [2.0, 3.0]]


def test_table4_rows_for_all_raters_and_subset(ratings: pd.DataFrame) -> None:
    table = table4(ratings, rater_sets(ratings, ["A", "B"], "experts"))
    assert list(table.columns) == list(TABLE4_COLUMNS)
    assert table[["region", "raters"]].to_numpy().tolist() == [
        [region, raters]
        for raters in ("all", "experts")
        for region in ("proximal", "medium", "peripheral", "overall")
    ]
    experts = table[table["raters"] == "experts"].set_index("region")
    assert experts["k"].tolist() == [2, 2, 2, 2]
    assert experts["n_images"].tolist() == [3, 4, 0, 4]
    expected = icc2(np.array([[4, 5], [3, 3], [5, 4]], dtype=float))
    assert experts.loc["proximal", "icc_2_1"] == pytest.approx(expected.icc_2_1)
    assert experts.loc["proximal", "icc_2_k_high"] == pytest.approx(expected.icc_2_k_high)
    assert np.isnan(experts.loc["peripheral", "icc_2_1"])
    everyone = table[table["raters"] == "all"].set_index("region")
    assert everyone["k"].tolist() == [3, 3, 3, 3]
    assert everyone.loc["peripheral", "n_images"] == 0


@pytest.mark.parametrize(
    ("subset", "name", "message"),
    [(["A", "Z"], "x", "unknown rater(s) Z"), (["A"], "x", "at least 2"),
     (["A", "B"], "all", "--subset-name")],
)  # fmt: skip
def test_bad_subsets(ratings: pd.DataFrame, subset: list[str], name: str, message: str) -> None:
    with pytest.raises(RatingsError, match=re.escape(message)):
        rater_sets(ratings, subset, name)
