"""`angiosynth phantom`: write a simulated biplane DSA archive (DICOM XA + ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import fail, one_line_errors, progress_bar
from angiosynth.config import PhantomConfig, load_config
from angiosynth.phantom.archive import write_archive
from angiosynth.phantom.preview import write_preview

_DEFAULTS = PhantomConfig()


@one_line_errors
def phantom(
    out: Path = typer.Argument(..., help="Archive directory to create (must be new or empty)."),
    patients: int = typer.Option(10, "--patients", "-n", min=1, help="Number of patients."),
    seed: int = typer.Option(
        0, "--seed", help="Master seed; the same seed gives the same archive."
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Parallel processes."),
    size: int = typer.Option(
        None,
        "--size",
        min=64,
        max=2048,
        help=f"Frame size in pixels (default {_DEFAULTS.image_size}, or image_size from --config).",
    ),
    config: Path = typer.Option(
        None, "--config", exists=True, dir_okay=False, help="YAML file with a `phantom:` section."
    ),
    preview: bool = typer.Option(False, "--preview", help="Also write OUT/preview.png."),
    pairs: bool = typer.Option(
        False,
        "--pairs",
        help="Also write OUT/pairs/*.npz: every frame rendered again without contrast (same "
        "anatomy, motion and noise), exact pairs for contrast-free translation.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT."),
) -> None:
    """Simulate a biplane cerebral DSA archive and write it as DICOM XA files.

    Each patient gets 1-2 studies with anterior (ICA), posterior (vertebral) and to-be-excluded
    (ECA, common carotid, arch, unlabelled) injections, each a biplane run (Plane A ~0/0,
    Plane B ~-90/0, about half oblique). Beside the DICOM files: ground_truth.parquet (one row
    per frame: phase, circulation, plane, angles), masks/*.npz (vessel masks with
    proximal/medium/peripheral/venous labels), annotations.csv and manifest.json; with
    --pairs also pairs/*.npz (no-contrast twins of the frames and the shutter).
    """
    settings = load_config(config, PhantomConfig, "phantom") if config else _DEFAULTS
    if size is not None:
        settings = settings.model_copy(update={"image_size": size})
        settings = PhantomConfig.model_validate(settings.model_dump())
    summary = write_archive(
        out,
        n_patients=patients,
        seed=seed,
        config=settings,
        workers=workers,
        overwrite=overwrite,
        progress=progress_bar,
        pairs=pairs,
    )
    typer.echo(
        f"wrote {summary.n_series} series ({summary.n_frames} frames, "
        f"{summary.n_arterial_frames} arterial) of {summary.n_patients} patients to {out}"
    )
    views = ", ".join(f"{v}: {n}" for v, n in summary.frames_per_view.items())
    typer.echo(f"arterial frames per view: {views}")
    if preview:
        if summary.n_arterial_frames == 0:
            fail(f"{out}: no arterial-phase frame to preview (archive written)")
        typer.echo(f"preview: {write_preview(out, out / 'preview.png')}")
