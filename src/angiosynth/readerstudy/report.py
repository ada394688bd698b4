"""Writing the reader-study analysis: Tables 2-4 (CSV and Markdown), analysis.json, Fig. 4 and
one self-contained report.html (figures embedded as base64 PNG).

Files in OUT: table2.csv, table3.csv, table4.csv, image_scores.csv (image-wise scores),
tables.md (the three tables), analysis.json, fig4a-e as PNG and PDF (fig4e only with a
prevalence), report.html. Existing files of these names are replaced.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from angiosynth.readerstudy.analysis import (
    RULES,
    SEGMENTS,
    ReaderStudyAnalysis,
    analyze,
    read_prevalence,
    read_ratings,
    read_screening,
)
from angiosynth.readerstudy.figures import FIGURES, SEGMENT_LABELS, write_figures
from angiosynth.runfiles import write_json_atomic, write_table_atomic, write_text_atomic

SCREENING_FILE = "screening.csv"
CAPTIONS = {
    "fig4a_rating_distribution": "Stacked proportions of the individual 1-5 ratings per "
    "segment and condition (the ratings that enter the analysis: NP, NA and masked external "
    "ratings left out).",
    "fig4b_segment_boxplots": "Image-wise segment scores (mean over raters) per condition; "
    "boxes span the interquartile range with the median, whiskers reach 1.5 IQR, points are "
    "images beyond the whiskers.",
    "fig4c_mean_heatmap": "Mean image-wise score per condition and segment (Table 3).",
    "fig4d_rater_means": "Mean of each rater's ratings with 95 % t intervals, by segment and "
    "by condition.",
    "fig4e_prevalence_vs_quality": "Share of the curated arterial-phase frames (all splits) "
    "in each condition vs. the mean overall image score (± SD).",
}
_NO_PREVALENCE = "Fig. 4e skipped: no --prevalence DATASET given."


def _number(value: float, digits: int = 2) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


def _integer(value: object) -> str:
    return "-" if pd.isna(value) else str(int(value))  # type: ignore[call-overload]


def display_table2(table: pd.DataFrame) -> pd.DataFrame:
    """Table 2 with the paper's headers, for Markdown and HTML."""
    shown = pd.DataFrame({"Condition": table["condition"]})
    for column, title in (("n_screened", "N_screened"), ("n_keep", "N_keep")):
        shown[title] = table[column].map(_integer)
    shown["Retention (%)"] = table["retention_pct"].map(lambda v: _number(v, 1))
    shown["N_scored"] = table["n_scored"].map(_integer)
    for segment in SEGMENTS:
        shown[f"{SEGMENT_LABELS[segment]} NA"] = table[f"{segment}_na"].map(_integer)
    shown["Ext. circ."] = table["external_circulation"].map(_integer)
    return shown


def display_table3(table: pd.DataFrame) -> pd.DataFrame:
    """Table 3 as mean ± SD cells."""
    shown = pd.DataFrame({"Condition": table["condition"], "N_images": table["n_images"]})
    for region in ("overall", *SEGMENTS):
        means, sds = table[f"{region}_mean"], table[f"{region}_sd"]
        cells = [f"{_number(m)} ± {_number(s)}" for m, s in zip(means, sds, strict=True)]
        shown[SEGMENT_LABELS[region]] = cells
    return shown


def display_table4(table: pd.DataFrame) -> pd.DataFrame:
    """Table 4 as ICC [95 % CI] cells."""
    shown = pd.DataFrame({"Region": table["region"].map(SEGMENT_LABELS), "Raters": table["raters"],
                          "n_images": table["n_images"], "k": table["k"]})  # fmt: skip
    for name, title in (("icc_2_1", "ICC(2,1) [95 % CI]"), ("icc_2_k", "ICC(2,k) [95 % CI]")):
        shown[title] = [
            f"{_number(v, 3)} [{_number(lo, 3)}, {_number(hi, 3)}]"
            for v, lo, hi in zip(table[name], table[f"{name}_low"], table[f"{name}_high"],
                                 strict=True)
        ]  # fmt: skip
    return shown


def _sections(analysis: ReaderStudyAnalysis) -> list[tuple[str, str, pd.DataFrame]]:
    """(title, note, table) of Tables 2-4."""
    counts = analysis.counts()
    retention = "no screening file: N_keep is the number of rated images"
    if "images_screened" in counts:
        kept, screened = counts["images_kept"], counts["images_screened"]
        retention = f"retention {kept}/{screened} = {100 * kept / max(screened, 1):.1f} %"
    excluded = counts["images_excluded_no_ratable_segment"]
    used = ", ".join(f"{r.region}/{r.raters}: {r.n_images}" for r in analysis.table4.itertuples())
    return [
        ("Table 2: screening retention and non-ratable images", retention,
         display_table2(analysis.table2)),
        ("Table 3: image-wise scores (Likert 1-5, mean ± SD)",
         f"{counts['images_scored']} images scored; {excluded} without a ratable segment "
         "excluded", display_table3(analysis.table3)),
        ("Table 4: inter-rater reliability (two-way random effects, absolute agreement)",
         f"complete cases per row (images used): {used}", display_table4(analysis.table4)),
    ]  # fmt: skip


def markdown_tables(analysis: ReaderStudyAnalysis) -> str:
    """tables.md: Tables 2-4 with a note under each."""
    parts = ["# Reader study: Tables 2-4\n"]
    for title, note, table in _sections(analysis):
        parts.append(f"## {title}\n\n{table.to_markdown(index=False)}\n\n{note}.\n")
    return "\n".join(parts)


def _records(table: pd.DataFrame) -> list[dict]:
    return json.loads(table.to_json(orient="records"))


def analysis_record(analysis: ReaderStudyAnalysis, figures: dict[str, Path]) -> dict:
    """The content of analysis.json: inputs, rules, counts, rater sets and the tables."""
    return {
        "inputs": analysis.sources,
        "rules": list(RULES),
        "counts": analysis.counts(),
        "rater_sets": analysis.rater_sets,
        "prevalence_pct": analysis.prevalence,
        "table2": _records(analysis.table2),
        "table3": _records(analysis.table3),
        "table4": _records(analysis.table4),
        "figures": sorted(figures),
        "notes": [] if analysis.prevalence is not None else [_NO_PREVALENCE],
    }


def _figure_html(name: str, png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    title, caption = html.escape(FIGURES[name]), html.escape(CAPTIONS[name])
    pdf = html.escape(png.with_suffix(".pdf").name)
    return (f'<figure><img alt="{title}" src="data:image/png;base64,{data}">'
            f'<figcaption><b>{title}.</b> {caption} (<a href="{pdf}">PDF</a>)</figcaption>'
            "</figure>")  # fmt: skip


def report_html(analysis: ReaderStudyAnalysis, figures: dict[str, Path]) -> str:
    """report.html: rules, counts, Tables 2-4 and Fig. 4 on one self-contained page."""
    counts = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in analysis.counts().items())
    rules = "".join(f"<li>{html.escape(rule)}</li>" for rule in RULES)
    body = [
        "<h1>Reader study analysis</h1>",
        f"<p>Ratings: {html.escape(analysis.sources.get('ratings', ''))}</p>",
        f"<h2>Counts</h2><ul>{counts}</ul>",
        f"<h2>Rules applied</h2><ul>{rules}</ul>",
    ]
    for title, note, table in _sections(analysis):
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(table.to_html(index=False, border=0, classes="table"))
        body.append(f"<p>{html.escape(note)}.</p>")
    body.append("<h2>Fig. 4</h2>")
    body.extend(_figure_html(name, png) for name, png in figures.items())
    if analysis.prevalence is None:
        body.append(f"<p>{_NO_PREVALENCE}</p>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin-bottom:.5em}"
        "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
        "figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#444}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Reader study analysis</title><style>{style}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def write_outputs(analysis: ReaderStudyAnalysis, out: Path) -> None:
    """Writes the tables, analysis.json, Fig. 4 and report.html into OUT (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("table2", "table3", "table4"):
        write_table_atomic(getattr(analysis, name), out / f"{name}.csv")
    write_table_atomic(
        analysis.scores.rename_axis("image_id").reset_index(), out / "image_scores.csv"
    )
    write_text_atomic(out / "tables.md", markdown_tables(analysis))
    figures = write_figures(analysis, out)
    write_json_atomic(out / "analysis.json", analysis_record(analysis, figures))
    write_text_atomic(out / "report.html", report_html(analysis, figures))


def write_analysis(
    ratings_path: Path,
    out: Path,
    screening_path: Path | None = None,
    subset: list[str] | None = None,
    subset_name: str = "subset",
    prevalence_dataset: Path | None = None,
) -> ReaderStudyAnalysis:
    """Reads the inputs, analyses them and writes everything into OUT.

    Args:
        ratings_path: long-format ratings CSV.
        out: output directory.
        screening_path: screening CSV [default: screening.csv beside the ratings, if present].
        subset: raters of the Table 4 subset (none: all raters only).
        subset_name: label of the subset rows.
        prevalence_dataset: curated dataset for Fig. 4e (None: Fig. 4e is skipped).

    Raises:
        RatingsError: malformed ratings / screening or a bad subset.
        DatasetError: prevalence_dataset is not a curated dataset with an arterial selection.
    """
    ratings_path = Path(ratings_path)
    ratings = read_ratings(ratings_path)
    if screening_path is None and (ratings_path.parent / SCREENING_FILE).is_file():
        screening_path = ratings_path.parent / SCREENING_FILE
    screening = read_screening(screening_path) if screening_path is not None else None
    prevalence = read_prevalence(prevalence_dataset) if prevalence_dataset is not None else None
    inputs = {"ratings": ratings_path, "screening": screening_path,
              "prevalence_dataset": prevalence_dataset}  # fmt: skip
    sources = {name: str(path) for name, path in inputs.items() if path is not None}
    analysis = analyze(ratings, screening, subset, subset_name, prevalence, sources)
    write_outputs(analysis, out)
    return analysis
