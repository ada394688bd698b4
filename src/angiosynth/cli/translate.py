"""`angiosynth translate`: non-contrast frames -> virtual-contrast angiograms."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import one_line_errors, progress_bar


@one_line_errors
def translate_command(
    run: Path = typer.Argument(..., help="Run directory of `angiosynth train translate`."),
    source: Path = typer.Argument(..., metavar="INPUT",
                                  help="Folder of images or DICOM XA files, or a curated dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write."),
    split: str = typer.Option("test", "--split", help="Split translated from a curated dataset."),
    dicom: bool = typer.Option(False, "--dicom", help="Also write DICOM (derived, synthetic)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT."),
) -> None:  # fmt: skip
    """Translate non-contrast frames into angiograms with a trained generator, whole frames at
    their own size.

    INPUT: a folder of images (8/16-bit PNG, JPEG, TIFF) and/or DICOM XA files (each frame shown
    like a curated native frame: log, windowed per file inside the shutter), or a curated
    dataset (its split's phantom no-contrast twins of arterial frames, else its mask frames).

    Writes OUT/images/*.png (the input's size and bit depth), OUT/dicom/*.dcm with --dicom
    (Secondary Capture, DERIVED, ConversionType SYN), OUT/translations.csv (what was translated
    from what) and OUT/translate.json. Evaluate with `angiosynth evaluate --translated OUT`.
    """
    from angiosynth.gan.inference import TranslateOptions, translate

    options = TranslateOptions(split=split, dicom=dicom, device=device, overwrite=overwrite)
    table = translate(run, source, out, options, progress=progress_bar)
    kinds = ", ".join(f"{n} {k}" for k, n in table["kind"].value_counts().items())
    typer.echo(f"translated {len(table)} frames ({kinds}) -> {out}/images; table "
               f"{out}/translations.csv")  # fmt: skip
