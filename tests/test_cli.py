"""The `angiosynth` command line, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from angiosynth import __version__
from angiosynth.cli.main import app
from angiosynth.conditions import VIEWS

runner = CliRunner()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    """`angiosynth phantom OUT --patients 1 --size 64 --seed 1 --preview`, run once."""
    out = tmp_path_factory.mktemp("cli") / "archive"
    result = runner.invoke(
        app, ["phantom", str(out), "--patients", "1", "--size", "64", "--seed", "1", "--preview"]
    )
    return out, result


def test_help_lists_the_commands_and_options() -> None:
    top = runner.invoke(app, ["--help"])
    sub = runner.invoke(app, ["phantom", "--help"])

    assert top.exit_code == 0, top.output
    assert "phantom" in top.output and "--version" in top.output
    assert sub.exit_code == 0, sub.output
    for option in ("--patients", "--seed", "--workers", "--size", "--config", "--preview",
                   "--overwrite", "--pairs"):  # fmt: skip
        assert option in sub.output, option


def test_size_help_shows_its_default() -> None:
    sub = runner.invoke(app, ["phantom", "--help"], env={"COLUMNS": "200"})

    line = next(x for x in sub.output.splitlines() if "--size" in x)
    assert "512" in line


def test_version() -> None:
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"angiosynth {__version__}"


def test_phantom_writes_an_archive_and_reports_view_counts(written) -> None:
    out, result = written

    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    truth = pd.read_parquet(out / "ground_truth.parquet")
    assert manifest["seed"] == 1 and manifest["config"]["image_size"] == 64
    assert truth["patient_id"].nunique() == 1
    assert len(list((out / "dicom").rglob("*.dcm"))) == truth["series_uid"].nunique() > 0
    stdout = result.stdout
    assert f"wrote {truth['series_uid'].nunique()} series ({len(truth)} frames" in stdout
    counts = manifest["arterial_frames_per_view"]
    line = next(x for x in stdout.splitlines() if x.startswith("arterial frames per view:"))
    assert line == "arterial frames per view: " + ", ".join(f"{v}: {counts[v]}" for v in VIEWS)


def test_pairs_option_writes_a_twin_file_per_series(tmp_path: Path) -> None:
    out = tmp_path / "archive"

    result = runner.invoke(app, ["phantom", str(out), "-n", "1", "--size", "64", "--pairs"])

    assert result.exit_code == 0, result.output
    truth = pd.read_parquet(out / "ground_truth.parquet")
    names = {p.stem for p in (out / "pairs").glob("*.npz")}
    assert names == set(truth["series_uid"]) and len(names) > 0
    assert json.loads((out / "manifest.json").read_text())["pairs"] is True


def test_preview_is_a_png(written) -> None:
    out, result = written
    png = out / "preview.png"

    assert result.exit_code == 0, result.output
    assert f"preview: {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
    assert not list(out.glob("*.tmp*"))


def test_existing_output_fails_with_one_line_error(written) -> None:
    out, first = written
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    result = runner.invoke(app, ["phantom", str(out), "--patients", "1", "--size", "64"])

    assert first.exit_code == 0
    assert result.exit_code == 2
    error_lines = result.stderr.strip().splitlines()
    assert len(error_lines) == 1, result.stderr
    assert error_lines[0].startswith("error: ") and "--overwrite" in error_lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize(
    "args",
    [
        ["--patients", "0"],
        ["--patients", "-3"],
        ["--size", "32"],
        ["--workers", "0"],
        ["--patients", "many"],
    ],
)
def test_invalid_options_fail_cleanly(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"

    result = runner.invoke(app, ["phantom", str(out), *args])

    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert args[0] in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_config_file_fails_with_the_field_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("phantom:\n  image_size: 128\n  colour: red\n")
    out = tmp_path / "out"

    result = runner.invoke(app, ["phantom", str(out), "--config", str(config)])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "bad.yaml" in result.stderr and "phantom.colour" in result.stderr
    assert not out.exists()


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phantom", str(tmp_path / "out"), "--config", "nope.yaml"])

    assert result.exit_code == 2
    assert "nope.yaml" in result.output
    assert not (tmp_path / "out").exists()


# --- expected and unexpected errors ---------------------------------------------------------


def _stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["curate", "{tmp}/missing", "--out", "{tmp}/dataset"], "archive directory not found"),
        (["phantom", "{tmp}/out", "--config", "{tmp}/bad.yaml"], "phantom.colour"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--condition", "AC C"], "--condition"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--n", "2"], "--design"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--design", "conditions"], "not a trained"),
        (["sample", "{tmp}/run", "--out", "{tmp}/s", "--condition", "AC A", "--sampler", "x"],
         "--sampler"),
        (["reader-study", "analyze", "{tmp}/ratings.csv", "--out", "{tmp}/a"], "no such file"),
    ],
)  # fmt: skip
def test_expected_errors_exit_2_with_one_error_line(tmp_path: Path, args, message) -> None:
    (tmp_path / "bad.yaml").write_text("phantom:\n  colour: red\n")

    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])

    assert result.exit_code == 2, result.output
    lines = _stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("angiosynth.cli.curate.curate", ["curate", "{tmp}", "--out", "{tmp}/dataset"]),
        ("angiosynth.cli.phantom.write_archive", ["phantom", "{tmp}/out"]),
        ("angiosynth.readerstudy.report.write_analysis",
         ["reader-study", "analyze", "{tmp}/ratings.csv", "--out", "{tmp}/a"]),
        ("angiosynth.diffusion.sampling.plan_samples",
         ["sample", "{tmp}/run", "--out", "{tmp}/s", "--condition", "AC A"]),
        ("angiosynth.readerstudy.storage.StudyStore.open",
         ["reader-study", "export", "{tmp}", "--out", "{tmp}/ratings.csv"]),
        ("angiosynth.readerstudy.study.create_study",
         ["reader-study", "create", "{tmp}", "--screener", "s", "--raters", "r", "--out",
          "{tmp}/study"]),
    ],
)  # fmt: skip
def test_unexpected_errors_are_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, args: list[str]
) -> None:
    monkeypatch.setattr(target, _boom)

    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])

    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "boom"
    assert result.exit_code == 1
    assert "error: " not in result.stderr
