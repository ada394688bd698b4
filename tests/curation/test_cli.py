"""`angiosynth curate` on the command line, run in-process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from angiosynth.cli.main import app

from .helpers import write_key

runner = CliRunner()


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_curate_help_lists_the_options() -> None:
    result = runner.invoke(app, ["curate", "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    for option in ("--out", "--rules", "--size", "--workers", "--seed", "--key-file"):
        assert option in result.output, option
    assert "curate" in runner.invoke(app, ["--help"]).output


def test_curate_run_prints_the_summary(curated, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    key = write_key(tmp_path / "key")
    args = ["curate", str(curated.dicom), "--out", str(out), "--size", "32", "--key-file", str(key)]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    s = curated.summary
    excluded = s.series - s.kept_series
    assert (
        f"{s.series} series in {s.files} files (0 already curated, 0 files skipped): "
        f"{s.kept_series} kept, {excluded} excluded; {s.frames} frames in {out}"
    ) in result.stdout
    for reason, n in s.excluded.items():
        assert f"  excluded, {reason}: {n}" in result.stdout
    assert f"report: {out / 'report.md'}" in result.stdout
    assert pd.read_parquet(out / "frames.parquet").shape[0] == s.frames

    again = runner.invoke(app, args)

    assert again.exit_code == 0, again.output
    assert f"({s.series} already curated, 0 files skipped)" in again.stdout


def test_curate_with_workers_matches_one_worker(curated, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    args = ["curate", str(curated.dicom), "--out", str(out), "--size", "64",
            "--key-file", str(curated.key_file), "--workers", "2"]  # fmt: skip

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    for table in ("series.parquet", "frames.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / table), pd.read_parquet(curated.out / table)
        )


def test_missing_archive_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_archive"

    result = runner.invoke(app, ["curate", str(missing), "--out", str(tmp_path / "dataset")])

    assert result.exit_code == 2
    assert _error_lines(result) == [f"error: {missing}: archive directory not found"]
    assert not (tmp_path / "dataset").exists()


def test_bad_rules_file_is_a_one_line_error(curated, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {pattern: ECA, circulation: excluded}\n")

    result = runner.invoke(
        app, ["curate", str(curated.dicom), "--out", str(tmp_path / "d"), "--rules", str(rules)]
    )

    assert result.exit_code == 2
    assert _error_lines(result) == [f"error: {rules}: rules.0.reason: required for excluded rules"]


def test_resuming_with_another_size_is_a_one_line_error(curated, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    base = ["curate", str(curated.dicom), "--out", str(out), "--key-file", str(curated.key_file)]
    assert runner.invoke(app, [*base, "--size", "32"]).exit_code == 0

    result = runner.invoke(app, [*base, "--size", "48"])

    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "--size 32" in lines[0], lines


def test_size_below_the_minimum_is_rejected(curated, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["curate", str(curated.dicom), "--out", str(tmp_path / "d"), "--size", "8"]
    )

    assert result.exit_code != 0
    assert not (tmp_path / "d").exists()


def test_a_key_file_that_is_not_hexadecimal_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    key = tmp_path / "key"
    key.write_text("not a key\n")

    result = runner.invoke(app, ["curate", str(tmp_path / "archive"), "--out",
                                 str(tmp_path / "dataset"), "--key-file", str(key)])  # fmt: skip

    assert result.exit_code == 2
    assert _error_lines(result) == [f"error: {key}: pseudonymisation key is not hexadecimal"]
