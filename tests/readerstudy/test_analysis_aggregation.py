"""Aggregation rules of the reader-study analysis on hand-made ratings (Tables 2 and 3)."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from angiosynth.readerstudy.analysis import (
    RATING_COLUMNS,
    TABLE2_COLUMNS,
    image_scores,
    read_ratings,
    read_screening,
    table2,
    table3,
    usable_ratings,
)

# (image, condition, rater, external, proximal, medium, peripheral)
RATINGS = [
    # img1: R3 flags external, so all of R3's scores of img1 are masked.
    ("img1", "AC A", "R1", 0, "4", "3", "NP"),
    ("img1", "AC A", "R2", 0, "5", "NA", "NP"),
    ("img1", "AC A", "R3", 1, "2", "2", "1"),
    # img2: nothing ratable (every segment NP/NA for every rater).
    ("img2", "AC A", "R1", 0, "NP", "NP", "NA"),
    ("img2", "AC A", "R2", 0, "NA", "NP", "NA"),
    ("img2", "AC A", "R3", 0, "NP", "NA", "NP"),
    # img3: every rater flags external: consistently external, nothing ratable.
    ("img3", "PC A", "R1", 1, "3", "3", "3"),
    ("img3", "PC A", "R2", 1, "4", "4", "2"),
    ("img3", "PC A", "R3", 1, "5", "5", "5"),
    # img4: rated by R1 and R2 only.
    ("img4", "PC A", "R1", 0, "2", "3", "4"),
    ("img4", "PC A", "R2", 0, "3", "NP", "4"),
    # img5: R2 external; medium and peripheral NA for both raters.
    ("img5", "AC B", "R1", 0, "1", "NA", "NA"),
    ("img5", "AC B", "R2", 1, "NP", "NA", "NA"),
]
SCREENING = [("img1", "AC A", 1), ("img2", "AC A", 1), ("img6", "AC A", 0),
             ("img3", "PC A", 1), ("img4", "PC A", 1), ("img5", "AC B", 1),
             ("img7", "AC B", 0), ("img8", "PC B", 0)]  # fmt: skip


def long_rows(ratings: list[tuple]) -> list[tuple]:
    """One row per image x rater x segment from (image, condition, rater, external, 3 scores)."""
    rows = []
    for image, condition, rater, external, *scores in ratings:
        for segment, score in zip(("proximal", "medium", "peripheral"), scores, strict=True):
            rows.append((image, condition, rater, segment, score, external))
    return rows


def write_ratings(path: Path, ratings: list[tuple]) -> Path:
    """Writes hand-made ratings as a long-format CSV."""
    pd.DataFrame(long_rows(ratings), columns=list(RATING_COLUMNS)).to_csv(path, index=False)
    return path


@pytest.fixture
def ratings(tmp_path: Path) -> pd.DataFrame:
    return read_ratings(write_ratings(tmp_path / "ratings.csv", RATINGS))


@pytest.fixture
def screening(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "screening.csv"
    pd.DataFrame(SCREENING, columns=["image_id", "condition", "keep"]).to_csv(path, index=False)
    return read_screening(path)


def test_na_strings_are_labels_not_missing_values(ratings: pd.DataFrame) -> None:
    labels = ratings.set_index(["image_id", "rater", "segment"])["label"]
    assert labels["img1", "R2", "medium"] == "NA"
    assert labels["img1", "R1", "peripheral"] == "NP"
    assert np.isnan(ratings.set_index(["image_id", "rater", "segment"]).loc[
        ("img1", "R2", "medium"), "score"])  # fmt: skip


def test_external_raters_are_masked_for_the_whole_image(ratings: pd.DataFrame) -> None:
    usable = usable_ratings(ratings)
    assert not ((usable["image_id"] == "img1") & (usable["rater"] == "R3")).any()
    assert not (usable["image_id"] == "img3").any()
    assert usable["score"].notna().all()
    assert len(usable) == 2 + 1 + 3 + 2 + 1  # img1 R1+R2, img4 R1+R2, img5 R1


def test_flag_on_any_row_masks_the_rater(tmp_path: Path) -> None:
    rows = long_rows([("img1", "AC A", "R1", 0, "4", "4", "4"),
                      ("img1", "AC A", "R2", 0, "2", "2", "2")])  # fmt: skip
    rows[3] = (*rows[3][:5], 1)  # R2 flags external on the proximal row only
    path = tmp_path / "ratings.csv"
    pd.DataFrame(rows, columns=list(RATING_COLUMNS)).to_csv(path, index=False)
    scores = image_scores(read_ratings(path))
    assert scores.loc["img1", ["proximal", "medium", "peripheral"]].tolist() == [4, 4, 4]


def test_image_scores_mean_over_raters_then_over_segments(ratings: pd.DataFrame) -> None:
    scores = image_scores(ratings)
    assert scores.loc["img1", "proximal"] == pytest.approx(4.5)
    assert scores.loc["img1", "medium"] == pytest.approx(3.0)
    assert np.isnan(scores.loc["img1", "peripheral"])  # R3's 1 is masked, the rest NP
    assert scores.loc["img1", "overall"] == pytest.approx((4.5 + 3.0) / 2)
    assert scores.loc["img4", ["proximal", "medium", "peripheral"]].tolist() == [2.5, 3.0, 4.0]
    assert scores.loc["img4", "overall"] == pytest.approx(9.5 / 3)
    assert scores.loc["img5", "overall"] == pytest.approx(1.0)
    assert scores.loc[["img2", "img3"], "overall"].isna().all()
    assert scores["condition"].to_dict()["img5"] == "AC B"


def test_table2_counts_without_screening(ratings: pd.DataFrame) -> None:
    table = table2(ratings, None).set_index("condition")
    assert list(table.reset_index().columns) == list(TABLE2_COLUMNS)
    expected = {  # n_keep, n_scored, prox NA, med NA, peri NA, external
        "AC A": [2, 1, 1, 1, 1, 0],
        "PC A": [2, 1, 0, 0, 0, 1],
        "AC B": [1, 1, 0, 1, 1, 0],
        "PC B": [0, 0, 0, 0, 0, 0],
        "All": [5, 3, 1, 2, 2, 1],
    }
    columns = ["n_keep", "n_scored", "proximal_na", "medium_na", "peripheral_na",
               "external_circulation"]  # fmt: skip
    for condition, counts in expected.items():
        assert table.loc[condition, columns].tolist() == counts, condition
    assert table["n_screened"].isna().all() and table["retention_pct"].isna().all()


def test_table2_retention_from_screening(ratings: pd.DataFrame, screening: pd.DataFrame) -> None:
    table = table2(ratings, screening).set_index("condition")
    assert table["n_screened"].tolist() == [3, 2, 2, 1, 8]
    assert table["n_keep"].tolist() == [2, 2, 1, 0, 5]
    assert table["retention_pct"].tolist() == [66.7, 100.0, 50.0, 0.0, 62.5]
    assert table["n_scored"].tolist() == [1, 1, 1, 0, 3]


def test_table3_excludes_images_without_a_ratable_segment(ratings: pd.DataFrame) -> None:
    table = table3(image_scores(ratings)).set_index("condition")
    assert table["n_images"].tolist() == [1, 1, 1, 0, 3]
    overall = [3.75, 9.5 / 3, 1.0]
    assert table.loc["All", "overall_mean"] == pytest.approx(sum(overall) / 3)
    assert table.loc["All", "overall_sd"] == pytest.approx(statistics.stdev(overall))
    assert table.loc["All", "proximal_mean"] == pytest.approx((4.5 + 2.5 + 1.0) / 3)
    assert table.loc["All", "medium_mean"] == pytest.approx((3.0 + 3.0) / 2)  # img5 has none
    assert table.loc["All", "medium_sd"] == pytest.approx(0.0)
    assert table.loc["AC A", "overall_mean"] == pytest.approx(3.75)
    assert np.isnan(table.loc["AC A", "overall_sd"])  # one image: no sample SD
    assert np.isnan(table.loc["PC B", "overall_mean"])
