"""`angiosynth segment`: vessel masks of angiograms with a trained segmenter."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import one_line_errors, progress_bar


@one_line_errors
def segment_command(
    run: Path = typer.Argument(..., help="Run directory of `angiosynth train segmenter` (or its "
                               "segmenter/ folder)."),
    source: Path = typer.Argument(..., metavar="INPUT",
                                  help="Folder of images (searched recursively) or a curated "
                                  "dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write."),
    threshold: float = typer.Option(0.5, "--threshold", help="Vessel where the probability is "
                                    "above this."),
    split: str = typer.Option("test", "--split", help="Split segmented from a curated dataset."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT."),
) -> None:  # fmt: skip
    """Segment the vessels of angiograms, whole frames at their own size.

    INPUT: a folder of images (8/16-bit PNG, JPEG, TIFF; native angiograms like a curated
    dataset's native frames, contrast dark), or a curated dataset (the native arterial frames
    of `--split`).

    Writes OUT/probabilities/*.png (16-bit vessel probability, 65535 = 1), OUT/masks/*.png
    (8-bit, 255 where the probability is above `--threshold`) and OUT/segment.json (the run,
    the input, and per image its input and vessel share). OUT appears only when complete.
    """
    from angiosynth.gan.segmenter import SegmentOptions, segment

    options = SegmentOptions(split=split, threshold=threshold, device=device, overwrite=overwrite)
    summary = segment(run, source, out, options, progress=progress_bar)
    share = sum(r["vessel_share"] for r in summary["images"]) / max(summary["frames"], 1)
    typer.echo(f"segmented {summary['frames']} frames (mean vessel share {share:.3f}) -> "
               f"{out}/masks, {out}/probabilities")  # fmt: skip
