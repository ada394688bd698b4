"""`reader-study analyze` through typer's CliRunner: tables, figures, report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import zarr
from typer.testing import CliRunner

from angiosynth.cli.readerstudy_analysis import analyze_command
from angiosynth.conditions import CONDITIONS
from angiosynth.readerstudy import report
from angiosynth.readerstudy.analysis import (
    RATING_COLUMNS,
    TABLE2_COLUMNS,
    TABLE4_COLUMNS,
    ReaderStudyAnalysis,
)
from angiosynth.readerstudy.figures import FIGURES, figure_drawers

RATERS = ("NR1", "NR2", "NS", "IM")
TABLE3_COLUMNS = ["condition", "n_images"] + [
    f"{region}_{stat}"
    for region in ("overall", "proximal", "medium", "peripheral")
    for stat in ("mean", "sd")
]


def analyze_app() -> typer.Typer:
    """A one-command app around `analyze_command` (main.py registers it elsewhere)."""
    app = typer.Typer(add_completion=False)
    app.command("analyze")(analyze_command)
    return app


def simulated_ratings(n_images: int = 32, seed: int = 0) -> pd.DataFrame:
    """Ratings of a plausible study: image quality + rater bias + noise, some NP/NA/external."""
    rng = np.random.default_rng(seed)
    rows = []
    bias = dict(zip(RATERS, rng.normal(0, 0.4, len(RATERS)), strict=True))
    for index in range(n_images):
        image, condition = f"img{index:03d}", CONDITIONS[index % len(CONDITIONS)]
        quality = rng.normal(3.2, 0.8)
        for rater in RATERS:
            external = int(rng.random() < 0.05)
            for depth, segment in enumerate(("proximal", "medium", "peripheral")):
                value = np.clip(np.rint(quality - 0.2 * depth + bias[rater] + rng.normal(0, 0.5)),
                                1, 5)  # fmt: skip
                score = rng.choice(["NP", "NA"]) if rng.random() < 0.08 else str(int(value))
                rows.append((image, condition, rater, segment, score, external))
    return pd.DataFrame(rows, columns=list(RATING_COLUMNS))


def write_study(root: Path) -> Path:
    """ratings.csv with screening.csv beside it (every rated image kept, 8 discarded)."""
    ratings = simulated_ratings()
    ratings.to_csv(root / "ratings.csv", index=False)
    images = ratings.groupby("image_id")["condition"].first().reset_index()
    discarded = pd.DataFrame({"image_id": [f"x{i}" for i in range(8)],
                              "condition": [CONDITIONS[i % 4] for i in range(8)]})  # fmt: skip
    screening = pd.concat([images.assign(keep=1), discarded.assign(keep=0)])
    screening.to_csv(root / "screening.csv", index=False)
    return root / "ratings.csv"


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return write_study(tmp_path)


def fake_dataset(root: Path, views: dict[str, int]) -> Path:
    """The files CuratedDataset needs, with an arterial selection of the given view counts."""
    root.mkdir()
    labels = [view for view, count in views.items() for _ in range(count)]
    pd.DataFrame({"series_uid": ["s1"]}).to_parquet(root / "series.parquet")
    pd.DataFrame({"frame_id": range(len(labels))}).to_parquet(root / "frames.parquet")
    zarr.open_array(root / "frames.zarr", mode="w", shape=(len(labels), 4, 4), dtype="uint16")
    splits = ["train", "val"] * len(labels)
    arterial = pd.DataFrame({"frame_id": range(len(labels)), "view": labels,
                             "split": splits[: len(labels)]})  # fmt: skip
    arterial.to_parquet(root / "arterial.parquet")
    return root


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run with --subset and --prevalence (drawing the figures is the slow part)."""
    root = tmp_path_factory.mktemp("study")
    study = write_study(root)
    dataset = fake_dataset(root / "dataset", {"AC A": 2, "PC A": 1, "AC B": 3, "Others": 4})
    out = root / "analysis"
    args = [str(study), "--out", str(out), "--subset", "NR1", "--subset", "NR2", "--subset",
            "NS", "--subset-name", "experts", "--prevalence", str(dataset)]  # fmt: skip
    result = CliRunner().invoke(analyze_app(), args)
    assert result.exit_code == 0, result.output
    return out, result.output


def assert_files(out: Path, names: list[str]) -> None:
    for name in names:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def test_writes_tables_figures_and_report(full_run: tuple[Path, str]) -> None:
    out, output = full_run
    assert "report:" in output and "Fig. 4e skipped" not in output
    assert_files(out, ["table2.csv", "table3.csv", "table4.csv", "tables.md", "analysis.json",
                       "report.html", "image_scores.csv"])  # fmt: skip
    assert_files(out, [f"{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")])
    assert list(pd.read_csv(out / "table2.csv").columns) == list(TABLE2_COLUMNS)
    assert list(pd.read_csv(out / "table3.csv").columns) == TABLE3_COLUMNS
    assert list(pd.read_csv(out / "table4.csv").columns) == list(TABLE4_COLUMNS)
    tables = (out / "tables.md").read_text()
    assert all(f"## Table {number}" in tables for number in (2, 3, 4))
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES) == 5
    assert "Table 4" in page and "masked" in page


def test_screening_beside_ratings_is_used(full_run: tuple[Path, str]) -> None:
    record = json.loads((full_run[0] / "analysis.json").read_text())
    assert record["counts"]["images_screened"] == 40
    assert record["counts"]["images_kept"] == 32
    assert record["counts"]["images_rated_but_not_kept"] == 0
    assert record["table2"][-1]["retention_pct"] == 80.0
    assert record["inputs"]["screening"].endswith("screening.csv")
    assert record["rules"]


def test_subset_adds_rows(full_run: tuple[Path, str]) -> None:
    table4 = pd.read_csv(full_run[0] / "table4.csv")
    assert table4["raters"].tolist() == ["all"] * 4 + ["experts"] * 4
    experts = table4[table4["raters"] == "experts"]
    assert experts["region"].tolist() == ["proximal", "medium", "peripheral", "overall"]
    assert (experts["k"] == 3).all() and (experts["n_images"] > 10).all()
    assert (table4.loc[table4["raters"] == "all", "k"] == 4).all()
    record = json.loads((full_run[0] / "analysis.json").read_text())
    assert record["rater_sets"]["experts"] == ["NR1", "NR2", "NS"]


def test_prevalence_from_the_arterial_selection(full_run: tuple[Path, str]) -> None:
    record = json.loads((full_run[0] / "analysis.json").read_text())
    assert record["prevalence_pct"] == {"AC A": 20.0, "PC A": 10.0, "AC B": 30.0, "PC B": 0.0}
    assert "fig4e_prevalence_vs_quality" in record["figures"]


def test_without_prevalence_fig4e_is_skipped(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[str, object] = {}

    def record_figures(analysis: ReaderStudyAnalysis, out: Path) -> dict[str, Path]:
        drawn.update(figure_drawers(analysis))
        return {}

    monkeypatch.setattr(report, "write_figures", record_figures)  # figures are tested above
    out = study.parent / "analysis"
    result = CliRunner().invoke(analyze_app(), [str(study), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Fig. 4e skipped" in result.output
    assert sorted(drawn) == sorted(name for name in FIGURES if not name.startswith("fig4e"))
    assert "Fig. 4e skipped" in (out / "report.html").read_text()
    record = json.loads((out / "analysis.json").read_text())
    assert record["prevalence_pct"] is None and record["notes"]
    assert pd.read_csv(out / "table4.csv")["raters"].tolist() == ["all"] * 4


def test_bad_ratings_give_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(",".join(RATING_COLUMNS) + "\nimg1,AC A,R1,proximal,6,0\n")
    result = CliRunner().invoke(analyze_app(), [str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "ratings.csv, line 2, column score" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--prevalence", "{tmp}"], ["--subset", "nobody"]])
def test_bad_options_give_a_one_line_error(study: Path, tmp_path: Path, args: list[str]) -> None:
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = CliRunner().invoke(analyze_app(), [str(study), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
