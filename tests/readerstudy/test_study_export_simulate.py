"""`reader-study export` and `reader-study simulate`: columns, values, determinism, ranges."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from study_testkit import BuiltStudy, build_study, copy_study, person, screen
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.readerstudy.app import COOKIE_NAME, create_app
from angiosynth.readerstudy.export import RATING_COLUMNS, SCREENING_COLUMNS, export_study
from angiosynth.readerstudy.schema import SCORES, SEGMENTS, ImageRow
from angiosynth.readerstudy.simulate import simulate_study

runner = CliRunner()


@pytest.fixture(scope="module")
def blank(tmp_path_factory) -> BuiltStudy:
    """40 images (quality rising with the index), raters ann, bob, cid, dan; no answers."""
    return build_study(tmp_path_factory.mktemp("blank"), n=40, raters=("ann", "bob", "cid", "dan"))


def _export(study: BuiltStudy, out) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = study.store()
    try:
        ratings, screening = export_study(store, out)
    finally:
        store.dispose()
    read = {"dtype": {"score": str}, "keep_default_na": False}
    return pd.read_csv(ratings, **read), pd.read_csv(screening)


def _simulate(study: BuiltStudy, raters: int, seed: int):
    store = study.store()
    try:
        return simulate_study(store, study.root / "images", raters=raters, seed=seed)
    finally:
        store.dispose()


def test_export_writes_exactly_what_was_answered(blank, tmp_path) -> None:
    study = copy_study(blank, tmp_path / "study")
    discarded = screen(study, discard=3)
    store = study.store()
    ann, bob = person(store, "ann"), person(store, "bob")
    first, second = store.queue(ann)[:2]
    store.rate(ann, first, {"proximal": 5, "medium": "NP", "peripheral": 2}, external=True)
    store.rate(ann, second, {"peripheral": "NA"})
    store.rate(bob, first, {"medium": 1})
    store.rate(bob, first, {"medium": 4})  # an edit
    store.dispose()

    ratings, screening = _export(study, tmp_path / "out" / "ratings.csv")

    assert tuple(ratings.columns) == RATING_COLUMNS
    assert tuple(screening.columns) == SCREENING_COLUMNS
    expected = sorted([
        (first, "ann", "proximal", "5", 1), (first, "ann", "medium", "NP", 1),
        (first, "ann", "peripheral", "2", 1),
        (second, "ann", "peripheral", "NA", 0), (first, "bob", "medium", "4", 0),
    ])  # fmt: skip
    rows = ratings[["image_id", "rater", "segment", "score", "external"]]
    assert sorted(map(tuple, rows.itertuples(index=False))) == expected
    conditions = _image_column(study, "condition")
    assert (ratings["condition"] == ratings["image_id"].map(conditions)).all()
    assert (screening["condition"] == screening["image_id"].map(conditions)).all()
    assert ratings["image_id"].is_monotonic_increasing
    assert len(screening) == 40 and screening["image_id"].is_monotonic_increasing
    assert set(screening.loc[screening["keep"] == 0, "image_id"]) == set(discarded)
    assert set(screening["keep"]) == {0, 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ratings.csv", "screening.csv"]


def test_export_leaves_out_images_discarded_after_rating(blank, tmp_path) -> None:
    study = copy_study(blank, tmp_path / "study")
    screen(study)
    store = study.store()
    ann, sam = person(store, "ann"), person(store, "sam")
    image_id = store.queue(ann)[0]
    store.rate(ann, image_id, {"proximal": 3, "medium": 3, "peripheral": 3})
    store.screen(sam, image_id, keep=False)
    store.dispose()

    ratings, screening = _export(study, tmp_path / "ratings.csv")

    assert ratings.empty and list(ratings.columns) == list(RATING_COLUMNS)
    assert screening.set_index("image_id").loc[image_id, "keep"] == 0


def test_simulate_fills_screening_and_the_first_raters(blank, tmp_path) -> None:
    study = copy_study(blank, tmp_path / "study")

    summary = _simulate(study, raters=3, seed=1)
    ratings, screening = _export(study, tmp_path / "ratings.csv")

    assert summary.images == 40 and summary.kept == 24 == screening["keep"].sum()
    assert summary.raters == ["ann", "bob", "cid"] and summary.ratings == len(ratings)
    assert sorted(ratings["rater"].unique()) == ["ann", "bob", "cid"]
    assert len(ratings) == 24 * 3 * 3
    assert set(ratings["score"]) <= set(SCORES) and set(ratings["external"]) <= {0, 1}
    assert ratings["external"].mean() < 0.2
    assert set(ratings["segment"]) == set(SEGMENTS)
    external = ratings.groupby(["image_id", "rater"])["external"].nunique()
    assert (external == 1).all()  # one flag per image x rater, repeated on its rows


def test_simulated_scores_follow_quality_and_segments(blank, tmp_path) -> None:
    study = copy_study(blank, tmp_path / "study")
    _simulate(study, raters=4, seed=0)
    ratings, screening = _export(study, tmp_path / "ratings.csv")
    numeric = ratings[ratings["score"].isin(list("12345"))].assign(
        value=lambda t: t["score"].astype(int)
    )
    index = _image_column(study, "sample_index")

    means = numeric.groupby("segment")["value"].mean()
    assert means["proximal"] > means["medium"] > means["peripheral"]
    by_image = numeric.groupby("image_id")["value"].mean()
    assert np.corrcoef(by_image.index.map(index), by_image.to_numpy())[0, 1] > 0.3
    kept_index = screening.loc[screening["keep"] == 1, "image_id"].map(index)
    assert kept_index.mean() > screening["image_id"].map(index).mean()
    unratable = ratings[~ratings["score"].isin(list("12345"))]
    assert len(unratable) < 0.25 * len(ratings)


def _image_column(study: BuiltStudy, column: str) -> dict[str, object]:
    """Image id -> a column of the images table (sample_index: higher, more vessel contrast)."""
    store = study.store()
    try:
        with store.session() as session:
            query = select(ImageRow.public_id, getattr(ImageRow, column))
            return dict(session.execute(query).all())
    finally:
        store.dispose()


def test_simulate_is_deterministic_per_seed(blank, tmp_path) -> None:
    runs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        study = copy_study(blank, tmp_path / name)
        _simulate(study, raters=2, seed=seed)
        runs[name] = [table.to_csv() for table in _export(study, tmp_path / f"{name}.csv")]

    assert runs["a"] == runs["b"]
    assert runs["a"][0] != runs["c"][0]


def test_simulate_and_export_through_the_cli(blank, tmp_path) -> None:
    study = copy_study(blank, tmp_path / "study")
    out = tmp_path / "export" / "ratings.csv"

    simulated = runner.invoke(app, ["reader-study", "simulate", str(study.root), "--raters", "4"])
    exported = runner.invoke(app, ["reader-study", "export", str(study.root), "--out", str(out)])
    again = runner.invoke(app, ["reader-study", "simulate", str(study.root), "--raters", "1"])

    assert simulated.exit_code == 0, simulated.output
    assert "kept 24" in simulated.output and "ann, bob, cid, dan" in simulated.output
    assert exported.exit_code == 0, exported.output
    assert out.is_file() and (out.parent / "screening.csv").is_file()
    assert again.exit_code == 2
    assert again.output.strip() == ("error: the study already has answers; simulate fills an "
                                    "empty study")  # fmt: skip


@pytest.mark.parametrize(("args", "message"), [
    (["simulate", "{study}", "--raters", "5"], "--raters must be 1-4"),
    (["simulate", "{missing}", "--raters", "1"], "not a reader study"),
    (["export", "{missing}", "--out", "{out}"], "not a reader study"),
    (["export", "{study}", "--out", "{screening}"], "must not be named screening.csv"),
    (["serve", "{missing}"], "not a reader study"),
    (["export", "{study}", "--out", "{out}", "--db", "mysql://x/y"], "sqlite or postgresql"),
    (["export", "{study}", "--out", "{out}", "--db", "sqlite:///{missing}/no/study.db"],
     "--db: cannot read the database"),
])  # fmt: skip
def test_cli_errors_are_one_line(blank, tmp_path, args, message) -> None:
    places = {"study": str(blank.root), "missing": str(tmp_path / "none"),
              "out": str(tmp_path / "r.csv"),
              "screening": str(tmp_path / "screening.csv")}  # fmt: skip

    result = runner.invoke(app, ["reader-study", *(a.format(**places) for a in args)])

    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def icc2_1(matrix: np.ndarray) -> float:
    """Shrout & Fleiss ICC(2,1) of a complete images x raters matrix."""
    n, k = matrix.shape
    grand = matrix.mean()
    rows = k * ((matrix.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    columns = n * ((matrix.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    total = ((matrix - grand) ** 2).sum()
    error = (total - rows * (n - 1) - columns * (k - 1)) / ((n - 1) * (k - 1))
    return (rows - error) / (rows + (k - 1) * error + k * (columns - error) / n)


@pytest.mark.slow
def test_a_paper_sized_simulation_looks_like_the_paper(tmp_path) -> None:
    study = build_study(tmp_path, n=400, raters=("r1", "r2", "r3", "r4"))

    summary = _simulate(study, raters=4, seed=0)
    ratings, _ = _export(study, tmp_path / "ratings.csv")

    assert summary.kept == 240  # the paper kept 239 of 400
    numeric = ratings[ratings["score"].isin(list("12345"))].assign(
        value=lambda t: t["score"].astype(int)
    )
    overall = numeric.groupby(["image_id", "rater"])["value"].mean().unstack().dropna()
    assert len(overall) > 200
    assert 0.35 < icc2_1(overall.to_numpy()) < 0.75  # the paper: 0.62
    means = numeric.groupby("segment")["value"].mean()
    assert means["proximal"] > means["medium"] > means["peripheral"]
    peripheral = ratings[ratings["segment"] == "peripheral"]["score"]
    assert 0.05 < peripheral.isin(["NP", "NA"]).mean() < 0.2


#: Rater names and conditions a spreadsheet would run as formulas, and one plain name.
_FORMULA_RATERS = ('=HYPERLINK("http://evil.example","x")', "+1+1", "-2", "@SUM(A1)", "plain")
_FORMULA_CONDITIONS = ("=1+1", "-1", "\t=cmd", "\r@x")


def test_export_neutralises_cells_a_spreadsheet_would_run(tmp_path) -> None:
    study = build_study(tmp_path, n=4, raters=_FORMULA_RATERS)
    store = study.store()
    with store.session() as session:
        for row, condition in zip(session.scalars(select(ImageRow).order_by(ImageRow.id)),
                                  _FORMULA_CONDITIONS, strict=True):  # fmt: skip
            row.condition = condition
    screen(study)
    for name in _FORMULA_RATERS:
        rater = person(store, name)
        store.rate(rater, store.queue(rater)[0], {"proximal": 5, "medium": "NA"}, external=True)
    web_app = create_app(study.root)
    admin = TestClient(web_app, cookies={COOKIE_NAME: study.tokens["admin"]})
    downloads = {
        name: admin.get(f"/admin/{name}").text for name in ("ratings.csv", "screening.csv")
    }
    web_app.state.study.store.dispose()
    ratings_file, screening_file = export_study(store, tmp_path / "out" / "ratings.csv")
    store.dispose()

    files = {path.name: path.read_bytes().decode() for path in (ratings_file, screening_file)}
    assert downloads == files  # the admin's downloads are the export files
    for text in files.values():  # a line break inside a cell is quoted, or it would start a row
        assert '"\'\r@x"' in text and '"\'\t=cmd"' in text
    ratings = list(csv.DictReader(io.StringIO(files["ratings.csv"])))
    screening = list(csv.DictReader(io.StringIO(files["screening.csv"])))
    assert len(ratings) == 2 * len(_FORMULA_RATERS) and len(screening) == 4
    assert {row["rater"] for row in ratings} == {"'" + n for n in _FORMULA_RATERS[:4]} | {"plain"}
    expected_conditions = {"'" + c for c in _FORMULA_CONDITIONS}
    assert {row["condition"] for row in ratings} <= expected_conditions
    assert {row["condition"] for row in screening} == expected_conditions
    assert {row["score"] for row in ratings} == {"5", "NA"}  # scores are never text formulas
    assert {row["external"] for row in ratings} == {"1"}
    assert {row["keep"] for row in screening} == {"1"}
    for row in (*ratings, *screening):
        assert not any(cell[:1] in set("=+-@\t\r") for cell in row.values()), row
