"""`angiosynth curate`: a DICOM XA archive -> a labelled, patient-split DSA frame dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import one_line_errors, progress_bar
from angiosynth.curation.curate import CurateOptions, curate
from angiosynth.curation.rules import load_rules

_DEFAULTS = CurateOptions()


@one_line_errors
def curate_command(
    dicom_dir: Path = typer.Argument(..., help="Root of the DICOM archive (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory (created or resumed)."),
    rules: Path = typer.Option(
        None,
        "--rules",
        exists=True,
        dir_okay=False,
        help="YAML circulation rules replacing the defaults (see configs/curation_rules.yaml).",
    ),
    size: int = typer.Option(
        _DEFAULTS.size, "--size", min=16, max=4096, help="Side of the stored frames."
    ),
    workers: int = typer.Option(
        _DEFAULTS.workers, "--workers", "-j", min=1, help="Parallel processes."
    ),
    seed: int = typer.Option(
        _DEFAULTS.seed, "--seed", help="Seed of the patient-level train/val/test split."
    ),
    key_file: Path = typer.Option(
        None,
        "--key-file",
        dir_okay=False,
        help="Pseudonymisation key (created if missing) [default: OUT.pseudonym-key beside OUT].",
    ),
) -> None:
    """Curate a DICOM XA archive into labelled DSA frames.

    Every series is labelled with its circulation (ordered regex rules over Series Description,
    Protocol Name and Body Part; unmatched series are excluded, never guessed), plane (Image
    Type, Plane Identification, then angle), C-arm angles and view (AC/PC x A/B within +-5°, else
    Others). Kept series are decoded (uncompressed, JPEG lossless, JPEG 2000, RLE), subtracted
    with their mask frames, windowed, resized and stored in OUT/frames.zarr, indexed by
    OUT/frames.parquet; their native (unsubtracted) frames go to OUT/native.zarr, same rows.
    Unusable files go to OUT/skipped.csv; OUT/report.md shows the flow and Table 1. Running
    again over the same archive resumes.
    """
    circulation_rules = load_rules(rules)
    options = CurateOptions(size=size, workers=workers, seed=seed, key_file=key_file)
    summary = curate(dicom_dir, out, circulation_rules, options, progress_bar)
    excluded = sum(summary.excluded.values())
    typer.echo(
        f"{summary.series} series in {summary.files} files ({summary.resumed_series} already "
        f"curated, {summary.skipped_files} files skipped): {summary.kept_series} kept, "
        f"{excluded} excluded; {summary.frames} frames in {out}"
    )
    for reason, n in sorted(summary.excluded.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  excluded, {reason}: {n}")
    typer.echo(f"report: {out / 'report.md'}")
