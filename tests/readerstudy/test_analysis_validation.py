"""Checks of ratings.csv and screening.csv: one-line errors naming file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from angiosynth.readerstudy.analysis import RatingsError, read_ratings, read_screening

HEADER = "image_id,condition,rater,segment,score,external"
GOOD = ["img1,AC A,R1,proximal,4,0", "img1,AC A,R1,medium,NA,0", "img1,AC A,R1,peripheral,NP,0"]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("lines", "where", "problem"),
    [
        (["image_id,condition,rater,segment,score", "img1,AC A,R1,proximal,4"],
         "line 1, column external", "missing"),
        ([HEADER, *GOOD, "img1,AC A,R2,distal,4,0"], "line 5, column segment", "'distal'"),
        ([HEADER, *GOOD, "img1,AC A,R2,proximal,7,0"], "line 5, column score", "'7'"),
        ([HEADER, "img1,AC A,R2,proximal,0,0"], "line 2, column score", "1-5, NP or NA"),
        ([HEADER, "img1,AC A,R2,proximal,3.5,0"], "line 2, column score", "'3.5'"),
        ([HEADER, "img1,AC A,R2,proximal,,0"], "line 2, column score", "''"),
        ([HEADER, *GOOD[:2], "img1,AC A,R2,proximal,4,yes"], "line 4, column external", "'yes'"),
        ([HEADER, "img1,AC C,R1,proximal,4,0"], "line 2, column condition", "'AC C'"),
        ([HEADER, "img1,AC A,,proximal,4,0"], "line 2, column rater", "empty"),
        ([HEADER, *GOOD, "img1,AC A,R1,medium,3,0"], "line 5, column image_id/rater/segment",
         "duplicate of line 3"),
        ([HEADER, *GOOD, "img1,PC B,R2,medium,3,0"], "line 5, column condition", "differs"),
    ],
)  # fmt: skip
def test_bad_ratings_name_file_line_and_column(
    tmp_path: Path, lines: list[str], where: str, problem: str
) -> None:
    path = write(tmp_path / "ratings.csv", lines)
    with pytest.raises(RatingsError) as caught:
        read_ratings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, {where}: "), message
    assert problem in message and "\n" not in message


def test_scores_parse_with_spaces_and_any_case(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", [HEADER, "img1, AC A ,R1,proximal, 4.0 ,0",
                                            "img1,AC A,R1,medium,np,1"])  # fmt: skip
    ratings = read_ratings(path)
    assert ratings["label"].tolist() == ["4", "NP"]
    assert ratings["score"].tolist()[0] == 4.0
    assert ratings["external"].tolist() == [False, True]
    assert ratings["condition"].tolist() == ["AC A", "AC A"]


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(RatingsError, match="line 1: empty file"):
        read_ratings(write(tmp_path / "ratings.csv", [""]))


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(RatingsError, match="line 2: no ratings"):
        read_ratings(write(tmp_path / "ratings.csv", [HEADER]))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_ratings(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("lines", "where"),
    [
        (["image_id,keep", "img1,1"], "line 1, column condition"),
        (["image_id,condition,keep", "img1,AC A,1", "img2,AC A,2"], "line 3, column keep"),
        (["image_id,condition,keep", "img1,AC A,1", "img1,AC A,0"], "line 3, column image_id"),
    ],
)
def test_bad_screening(tmp_path: Path, lines: list[str], where: str) -> None:
    path = write(tmp_path / "screening.csv", lines)
    with pytest.raises(RatingsError, match=f"screening.csv, {where}"):
        read_screening(path)
