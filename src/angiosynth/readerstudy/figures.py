"""Fig. 4 of the paper (a)-(e): reader-study ratings by condition, segment and rater.

Figures are drawn on matplotlib `Figure` objects with the Agg canvas (no pyplot state) and
saved as PNG and PDF.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from angiosynth.conditions import CONDITIONS
from angiosynth.readerstudy.analysis import SEGMENTS, ReaderStudyAnalysis, usable_ratings
from angiosynth.runfiles import save_figure_atomic

LIKERT = (1, 2, 3, 4, 5)
SEGMENT_LABELS = {"proximal": "Prox.", "medium": "Med.", "peripheral": "Peri.",
                  "overall": "Overall"}  # fmt: skip
SEGMENT_COLORS = {"proximal": "#1b6ca8", "medium": "#e08a1e", "peripheral": "#3a9a4b"}
FIGURES = {
    "fig4a_rating_distribution": "(a) Distribution of the individual 1-5 ratings",
    "fig4b_segment_boxplots": "(b) Image-wise segment scores",
    "fig4c_mean_heatmap": "(c) Mean image-wise scores",
    "fig4d_rater_means": "(d) Rater-wise mean scores with 95 % CI",
    "fig4e_prevalence_vs_quality": "(e) Condition prevalence vs. mean overall score",
}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def rating_distribution(analysis: ReaderStudyAnalysis) -> Figure:
    """(a) Stacked proportional bars of the usable 1-5 ratings per segment and condition."""
    usable = usable_ratings(analysis.ratings)
    figure = _figure(11, 3.8)
    axes = figure.subplots(1, len(SEGMENTS), sharey=True)
    colors = colormaps["RdYlGn"](np.linspace(0.08, 0.92, len(LIKERT)))
    for ax, segment in zip(axes, SEGMENTS, strict=True):
        rows = usable[usable["segment"] == segment]
        counts = pd.crosstab(rows["condition"], rows["score"].astype(int))
        counts = counts.reindex(index=list(CONDITIONS), columns=list(LIKERT), fill_value=0)
        shares = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
        bottom = np.zeros(len(CONDITIONS))
        for score, color in zip(LIKERT, colors, strict=True):
            ax.bar(CONDITIONS, shares[score], bottom=bottom, color=color, label=str(score))
            bottom += shares[score].to_numpy()
        ax.set_title(SEGMENT_LABELS[segment])
        ax.set_xlabel("Condition")
    axes[0].set_ylabel("Proportion of ratings")
    axes[-1].legend(title="Likert", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return figure


def segment_boxplots(analysis: ReaderStudyAnalysis) -> Figure:
    """(b) Box plots of image-wise segment scores per condition (whiskers 1.5 IQR)."""
    scores = analysis.scores
    figure = _figure(11, 3.8)
    axes = figure.subplots(1, len(SEGMENTS), sharey=True)
    for ax, segment in zip(axes, SEGMENTS, strict=True):
        groups = [scores.loc[scores["condition"] == c, segment].dropna() for c in CONDITIONS]
        ax.boxplot(
            [group.to_numpy() for group in groups],
            tick_labels=list(CONDITIONS),
            whis=1.5,
            patch_artist=True,
            boxprops={"facecolor": SEGMENT_COLORS[segment], "alpha": 0.45},
            medianprops={"color": "black"},
            flierprops={"marker": "o", "markersize": 4, "markerfacecolor": "grey"},
        )
        ax.set_title(SEGMENT_LABELS[segment])
        ax.set_xlabel("Condition")
        _likert_axis(ax)
    axes[0].set_ylabel("Image-wise score (mean over raters)")
    return figure


def _likert_axis(ax: Axes) -> None:
    ax.set_ylim(0.8, 5.2)
    ax.set_yticks(LIKERT)
    ax.grid(axis="y", alpha=0.3)


def mean_heatmap(analysis: ReaderStudyAnalysis) -> Figure:
    """(c) Heat map of mean image-wise scores, condition x region, values in the cells."""
    regions = [*SEGMENTS, "overall"]
    table = analysis.table3.set_index("condition").loc[list(CONDITIONS)]
    values = table[[f"{region}_mean" for region in regions]].to_numpy(dtype=float)
    figure = _figure(6.2, 4.2)
    ax = figure.subplots()
    image = ax.imshow(values, cmap="viridis", vmin=1, vmax=5, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        text = "-" if np.isnan(value) else f"{value:.2f}"
        shade = "black" if np.isnan(value) or value > 3.5 else "white"
        ax.text(column, row, text, ha="center", va="center", color=shade, fontsize=11)
    ax.set_xticks(range(len(regions)), [SEGMENT_LABELS[region] for region in regions])
    ax.set_yticks(range(len(CONDITIONS)), list(CONDITIONS))
    ax.set_xlabel("Segment")
    ax.set_ylabel("Condition")
    figure.colorbar(image, ax=ax, label="Mean image-wise score (1-5)")
    return figure


def rater_means(ratings: pd.DataFrame, by: str = "segment") -> pd.DataFrame:
    """Mean and 95 % t interval of each rater's usable ratings per segment or condition.

    Args:
        ratings: checked long-format ratings.
        by: "segment" or "condition".

    Returns:
        rater, <by>, n, mean, low, high (low/high NaN with fewer than 2 ratings).
    """
    rows = []
    for (rater, group), scores in usable_ratings(ratings).groupby(["rater", by])["score"]:
        n, mean = len(scores), scores.mean()
        half = np.nan
        if n > 1:
            half = stats.t.ppf(0.975, n - 1) * scores.std(ddof=1) / np.sqrt(n)
        rows.append({"rater": rater, by: group, "n": n, "mean": mean,
                     "low": mean - half, "high": mean + half})  # fmt: skip
    return pd.DataFrame(rows, columns=["rater", by, "n", "mean", "low", "high"])


def _rater_panel(ax: Axes, means: pd.DataFrame, by: str, groups: dict[str, str]) -> None:
    """Rater on x, one offset marker with its CI per group (label -> colour)."""
    raters = sorted(means["rater"].unique())
    offsets = np.linspace(-0.25, 0.25, len(groups))
    for offset, (group, color) in zip(offsets, groups.items(), strict=True):
        rows = means[means[by] == group].set_index("rater").reindex(raters)
        errors = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
        ax.errorbar(
            np.arange(len(raters)) + offset, rows["mean"], yerr=errors, fmt="o", capsize=3,
            color=color, label=SEGMENT_LABELS.get(group, group),
        )  # fmt: skip
    ax.set_xticks(range(len(raters)), raters)
    ax.set_xlabel("Rater")
    _likert_axis(ax)
    ax.legend(title=by.capitalize(), loc="upper center", bbox_to_anchor=(0.5, -0.16),
              fontsize="small", ncols=len(groups))  # fmt: skip


def rater_means_figure(analysis: ReaderStudyAnalysis) -> Figure:
    """(d) Rater-wise mean scores with 95 % CIs (t interval over the rater's ratings), by
    segment (left) and by condition (right)."""
    n_raters = analysis.ratings["rater"].nunique()
    figure = _figure(max(9.0, 2.2 * n_raters + 2.0), 4.8)
    by_segment, by_condition = figure.subplots(1, 2, sharey=True)
    _rater_panel(by_segment, rater_means(analysis.ratings, "segment"), "segment",
                 SEGMENT_COLORS)  # fmt: skip
    condition_colors = colormaps["tab10"](np.arange(len(CONDITIONS)))
    _rater_panel(by_condition, rater_means(analysis.ratings, "condition"), "condition",
                 dict(zip(CONDITIONS, condition_colors, strict=True)))  # fmt: skip
    by_segment.set_title("By segment")
    by_condition.set_title("By condition")
    by_segment.set_ylabel("Mean rating (95 % CI)")
    return figure


def prevalence_vs_quality(analysis: ReaderStudyAnalysis) -> Figure:
    """(e) Condition prevalence (%) in the curated arterial frames vs. mean overall score."""
    if analysis.prevalence is None:
        raise ValueError("Fig. 4e needs the condition prevalence (--prevalence DATASET)")
    table = analysis.table3.set_index("condition").loc[list(CONDITIONS)]
    shares = [analysis.prevalence[condition] for condition in CONDITIONS]
    figure = _figure(5.5, 4.2)
    ax = figure.subplots()
    ax.errorbar(shares, table["overall_mean"], yerr=table["overall_sd"], fmt="o", capsize=4,
                color="#1b6ca8")  # fmt: skip
    for share, score, condition in zip(shares, table["overall_mean"], CONDITIONS, strict=True):
        ax.annotate(condition, (share, score), textcoords="offset points", xytext=(7, 5))
    ax.set_xlabel("Prevalence in curated arterial-phase frames (%)")
    ax.set_ylabel("Mean overall score (± SD)")
    _likert_axis(ax)
    ax.set_xlim(0, max([*shares, 1.0]) * 1.25)
    return figure


def figure_drawers(
    analysis: ReaderStudyAnalysis,
) -> dict[str, Callable[[ReaderStudyAnalysis], Figure]]:
    """The drawing function of each figure to draw: (a)-(d), and (e) with a prevalence."""
    drawers = {
        "fig4a_rating_distribution": rating_distribution,
        "fig4b_segment_boxplots": segment_boxplots,
        "fig4c_mean_heatmap": mean_heatmap,
        "fig4d_rater_means": rater_means_figure,
    }
    if analysis.prevalence is not None:
        drawers["fig4e_prevalence_vs_quality"] = prevalence_vs_quality
    return drawers


def write_figures(analysis: ReaderStudyAnalysis, out: Path) -> dict[str, Path]:
    """Draws Fig. 4 (a)-(d), and (e) when the prevalence is known, as OUT/<name>.png/.pdf.

    Returns:
        The PNG path of each figure drawn, by name (the PDF lies beside it).
    """
    written = {}
    for name, draw in figure_drawers(analysis).items():
        figure = draw(analysis)
        figure.suptitle(FIGURES[name])
        png = Path(out) / f"{name}.png"
        save_figure_atomic(figure, png)
        save_figure_atomic(figure, png.with_suffix(".pdf"))
        written[name] = png
    return written
