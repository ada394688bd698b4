"""The curation report: the flow of series (Fig. 1 of the paper) and Table 1.

Table 1 counts frames per circulation x plane x canonical angle bin (+-5 degrees around 0/0 for
Plane A and -90/0 for Plane B); everything else is "Others". Before `phase select` it counts all
stored frames of the kept series; afterwards, the selected arterial-phase frames, as the paper.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from angiosynth.conditions import CANONICAL_ANGLES, CONDITIONS
from angiosynth.curation.dataset import (
    ARTERIAL_FILE,
    FRAMES_FILE,
    SERIES_FILE,
    SKIPPED_FILE,
)
from angiosynth.runfiles import write_text_atomic

PHASE_METRICS_FILE = "phase_metrics.json"


def table1(frames: pd.DataFrame) -> pd.DataFrame:
    """Table 1 of the paper over frames with a `view` column.

    Returns:
        Columns Circulation, Plane, Prim./Sec. (°), Count, Proportion (%); one row per canonical
        condition, then Others.
    """
    total = max(len(frames), 1)
    counts = frames["view"].value_counts() if len(frames) else pd.Series(dtype=int)
    rows = []
    for view in CONDITIONS:
        circulation, plane = view.split()
        primary, secondary = CANONICAL_ANGLES[plane]
        n = int(counts.get(view, 0))
        rows.append([circulation, plane, f"{primary:.0f}/{secondary:.0f}", n, 100 * n / total])
    others = len(frames) - sum(r[3] for r in rows)
    rows.append(["Others", "", "", others, 100 * others / total])
    table = pd.DataFrame(
        rows, columns=["Circulation", "Plane", "Prim./Sec. (°)", "Count", "Proportion (%)"]
    )
    table["Proportion (%)"] = table["Proportion (%)"].round(2)
    return table


def flow(series: pd.DataFrame, skipped: pd.DataFrame) -> pd.DataFrame:
    """The curation flow: series found, excluded by reason, kept; files skipped."""
    excluded = series["excluded_reason"].dropna() if len(series) else pd.Series(dtype=str)
    rows = [["DICOM files skipped (unreadable or not XA images)", len(skipped)]]
    rows.append(["DSA series found", len(series)])
    for reason, n in excluded.value_counts().items():
        rows.append([f"  excluded: {reason}", int(n)])
    rows.append(["series kept (anterior or posterior circulation)", len(series) - len(excluded)])
    return pd.DataFrame(rows, columns=["Step", "Count"])


def write_report(root: Path) -> tuple[Path, Path]:
    """Writes DATASET/report.md and report.html from the dataset's tables."""
    root = Path(root)
    series = pd.read_parquet(root / SERIES_FILE)
    frames = pd.read_parquet(root / FRAMES_FILE)
    skipped_path = root / SKIPPED_FILE
    skipped = pd.read_csv(skipped_path) if skipped_path.exists() else pd.DataFrame()
    sections = [("Curation flow", flow(series, skipped))]
    arterial_path = root / ARTERIAL_FILE
    if arterial_path.exists():
        selected = pd.read_parquet(arterial_path)
        title = f"Table 1: arterial-phase frames (N = {len(selected)})"
        sections.append((title, table1(selected)))
    kept = frames[frames["circulation"].isin(["anterior", "posterior"])]
    sections.append((f"All stored frames of kept series (N = {len(kept)})", table1(kept)))
    kept_series = series[series["excluded_reason"].isna()]
    splits = kept_series.groupby("split")["patient_id"].nunique().rename("patients").to_frame()
    splits["series"] = kept_series.groupby("split").size()
    splits["frames"] = kept.groupby("split").size()
    sections.append(("Patient splits", splits.fillna(0).astype(int).reset_index()))
    metrics_path = root / PHASE_METRICS_FILE
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        table = pd.DataFrame([(k, v) for k, v in _flatten(metrics)], columns=["Metric", "Value"])
        sections.append(("Arterial-phase classifier", table))
    md = root / "report.md"
    write_text_atomic(md, _markdown(root, sections))
    page = root / "report.html"
    write_text_atomic(page, _html(root, sections))
    return md, page


def _flatten(metrics: dict, prefix: str = ""):
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key} ")
        else:
            yield f"{prefix}{key}", round(value, 4) if isinstance(value, float) else value


def _markdown(root: Path, sections: list[tuple[str, pd.DataFrame]]) -> str:
    parts = [f"# Curation report: {root.name}\n"]
    for title, table in sections:
        parts.append(f"## {title}\n\n{table.to_markdown(index=False)}\n")
    return "\n".join(parts)


def _html(root: Path, sections: list[tuple[str, pd.DataFrame]]) -> str:
    body = [f"<h1>Curation report: {html.escape(root.name)}</h1>"]
    for title, table in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(table.to_html(index=False, border=0, classes="table"))
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Curation report</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
