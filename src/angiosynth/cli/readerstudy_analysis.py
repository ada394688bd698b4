"""`angiosynth reader-study analyze`: Tables 2-4, Fig. 4 and a report from reader ratings."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import one_line_errors


@one_line_errors
def analyze_command(
    ratings: Path = typer.Argument(..., dir_okay=False,
                                   help="Long-format ratings CSV (`reader-study export`)."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Directory to write."),
    screening: Path = typer.Option(None, "--screening", dir_okay=False, metavar="CSV",
                                   help="Screening CSV (image_id, condition, keep) "
                                   "[default: screening.csv beside RATINGS, when present]."),
    subset: list[str] = typer.Option(None, "--subset", metavar="RATER",
                                     help="A rater of the subset for Table 4 (repeat)."),
    subset_name: str = typer.Option("subset", "--subset-name", metavar="LABEL",
                                    help="Label of the --subset raters in Table 4."),
    prevalence: Path = typer.Option(None, "--prevalence", file_okay=False, metavar="DATASET",
                                    help="Curated dataset directory: condition prevalence for "
                                    "Fig. 4e [default: Fig. 4e is skipped]."),
) -> None:  # fmt: skip
    """Analyse reader-study ratings (paper §2.4): Tables 2-4, Fig. 4 (a)-(e), report.html.

    **Input**: RATINGS has one row per image x rater x segment: image_id, condition (AC A, PC A,
    AC B, PC B), rater, segment (proximal, medium, peripheral), score (1-5, NP or NA) and
    external (0/1: the rater flagged the image as external circulation). Malformed rows stop
    the analysis with the file, line and column.

    **Rules**: a rater who flags an image external is masked for that image; the segment score
    of an image is the mean over raters of the remaining numeric scores (NP/NA ignored), its
    overall score the mean of the available segment scores; images without any are excluded
    from Table 3 and counted. Table 4 (ICC(2,1), ICC(2,k), 95 % CIs) uses complete cases: an
    image enters a region when every rater of the set has a score for it; for "overall" each
    rater's value is the mean of that rater's segment scores.

    Writes OUT/table2.csv, table3.csv, table4.csv, tables.md, image_scores.csv,
    analysis.json, fig4a-fig4e (.png and .pdf; fig4e only with `--prevalence`) and
    report.html, replacing files of these names.
    """
    from angiosynth.readerstudy.report import write_analysis  # matplotlib: load on use only

    analysis = write_analysis(ratings, out, screening, subset, subset_name, prevalence)
    counts = analysis.counts()
    typer.echo(
        f"images: {counts['images_rated']} rated, {counts['images_scored']} scored, "
        f"{counts['images_excluded_no_ratable_segment']} without a ratable segment excluded; "
        f"raters: {counts['raters']}"
    )
    for row in analysis.table4[analysis.table4["region"] == "overall"].itertuples():
        typer.echo(
            f"overall ICC ({row.raters}, k = {row.k}, {row.n_images} images): "
            f"ICC(2,1) {row.icc_2_1:.3f}, ICC(2,k) {row.icc_2_k:.3f}"
        )
    if analysis.prevalence is None:
        typer.echo("Fig. 4e skipped (no --prevalence DATASET)")
    typer.echo(f"report: {out / 'report.html'}")
