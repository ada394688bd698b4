"""EVAL/report.html and its figures (see `evaluation.evaluate` for the folder layout)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from angiosynth.conditions import VIEWS
from angiosynth.diffusion.figures import condition_grid
from angiosynth.errors import OptionError
from angiosynth.evaluation import morphology
from angiosynth.runfiles import save_figure_atomic, write_text_atomic

#: The CSS of the evaluation reports.
PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;font-size:13px}"
    "td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
    "img{max-width:100%}figcaption{font-size:12px;color:#555}"
)

#: Near-copies shown in the report at most.
MAX_NEAR_COPIES = 12


def save_figure(fig, path: Path) -> str:
    """Saves a figure as PNG and PDF beside it, closes it and returns the PNG's name."""
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=130)
    save_figure_atomic(fig, path.with_suffix(".pdf"), dpi=130)
    plt.close(fig)
    return path.name


def fid_figure(result: dict, path: Path) -> str:
    """FID per condition (bootstrap median, 95 % interval) with the real-vs-real floor and the
    wrong-view level as reference marks."""
    inception = result["inception"]
    names = ["overall", *inception["per_condition"]]
    values = [inception["overall"], *inception["per_condition"].values()]
    references = inception["reference"]
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.2))
    x = np.arange(len(names))
    median = np.array([v["fid_bootstrap"]["median"] for v in values])
    low = median - np.array([v["fid_bootstrap"]["low"] for v in values])
    high = np.array([v["fid_bootstrap"]["high"] for v in values]) - median
    ax.bar(x, median, yerr=[low, high], color="#4c72b0", capsize=4, label="synthetic vs real")
    for i, name in enumerate(names):
        ref = references.get(name, {})
        if ref.get("same_view") is not None:
            ax.hlines(
                ref["same_view"],
                i - 0.4,
                i + 0.4,
                colors="#2ca02c",
                label="real vs real (training frames, same view)" if i == 0 else None,
            )
        if ref.get("other_views") is not None:
            ax.hlines(
                ref["other_views"],
                i - 0.4,
                i + 0.4,
                colors="#d62728",
                linestyles="--",
                label="real vs real (training frames, other views)" if i == 1 else None,
            )
    ax.set_xticks(x, names)
    ax.set_ylabel("FID (bootstrap median, 95 % CI)")
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path)


def confusion_figure(result: dict, path: Path) -> str:
    """Prompted condition (rows) x classified view (columns), shares per row."""
    counts = pd.DataFrame(result["condition_accuracy"]["confusion"]).T.reindex(columns=VIEWS)
    counts = counts.fillna(0)
    shares = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
    fig, ax = plt.subplots(figsize=(5, 0.6 * len(counts) + 1.4))
    ax.imshow(shares.to_numpy(float), cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts.to_numpy(int)):
        ax.text(
            j,
            i,
            str(n),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if shares.iat[i, j] > 0.6 else "black",
        )
    ax.set_xticks(range(len(VIEWS)), VIEWS, fontsize=8)
    ax.set_yticks(range(len(counts)), counts.index, fontsize=8)
    ax.set_xlabel("classified as")
    ax.set_ylabel("prompted")
    return save_figure(fig, path)


def distance_figure(memo: dict, table: pd.DataFrame, real_test: np.ndarray, path: Path) -> str:
    """Histograms of sample -> train and real test -> train distances (feature space), with
    the flagging threshold."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    for ax, space in zip(axes, ("feature", "pixel"), strict=True):
        ax.hist(
            table[f"{space}_distance"], bins=30, alpha=0.6, label="synthetic -> train", density=True
        )
        ax.hist(real_test[space], bins=30, alpha=0.6, label="real test -> train", density=True)
        ax.axvline(memo[space]["threshold"], color="k", linestyle="--", label="1st percentile")
        ax.set_xlabel(f"nearest training frame, {space} distance")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def near_copies_figure(fake: np.ndarray, train: np.ndarray, table: pd.DataFrame, path: Path):
    """Flagged samples (top row) above their nearest training frame; None when none flagged."""
    flagged = table[table["flagged"]].sort_values("feature_distance").head(MAX_NEAR_COPIES)
    if flagged.empty:
        return None
    fig, axes = plt.subplots(2, len(flagged), figsize=(1.3 * len(flagged), 2.8), squeeze=False)
    for j, (i, row) in enumerate(flagged.iterrows()):
        axes[0, j].imshow(fake[i], cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(train[int(row["feature_neighbour"])], cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"#{i}", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("flagged samples (top) and their nearest training frames (bottom)", fontsize=8)
    return save_figure(fig, path)


def html_table(frame: pd.DataFrame) -> str:
    """A table as HTML, numbers to 4 significant digits, missing values blank."""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="")


def html_figure(name: str | None, caption: str) -> str:
    """An <img> with its caption; only the caption, in italics, when there is no figure."""
    if name is None:
        return f"<p><em>{html.escape(caption)}</em></p>"
    return (
        f'<figure><img src="{name}" alt=""><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def write_report(out: Path, result: dict, tables: dict, images: dict, real_root, samples_dir):
    """Draws the figures and writes EVAL/report.html.

    Args:
        out: the evaluation folder.
        result: the content of metrics.json.
        tables: "memorisation" (one row per sample), "reference" (test -> train distances per
            space), "morphology" (vessel features).
        images: "fake" (N, s, s) samples, "train" (M, s, s) training frames at the samples' size.
    """
    out = Path(out)
    memo_table = tables["memorisation"]
    figures = {
        "fid": fid_figure(result, out / "fid.png"),
        "grid": _grid(samples_dir, real_root, out / "grid.png"),
        "confusion": confusion_figure(result, out / "confusion.png"),
        "distances": distance_figure(
            result["memorisation"], memo_table, tables["reference"], out / "distances.png"
        ),
        "near": near_copies_figure(
            images["fake"], images["train"], memo_table, out / "near_copies.png"
        ),
        "morphology": _morphology(tables["morphology"], out / "morphology.png"),
    }
    write_text_atomic(out / "report.html", _html(result, figures))


def _grid(samples_dir, real_root, path: Path) -> str | None:
    try:
        return condition_grid(samples_dir, real_root, path).name
    except OptionError:  # no samples of the four conditions
        return None


def _morphology(table: pd.DataFrame, path: Path) -> str:
    real = table[table["source"] == "real"]
    fake = table[table["source"] == "synthetic"]
    return morphology.morphology_figure(real, fake, path, by="condition").name


def _html(result: dict, figures: dict) -> str:
    summary = pd.DataFrame(result["summary"])
    inputs, memo = result["inputs"], result["memorisation"]
    accuracy = result["view_classifier"]
    warnings_html = "".join(
        f"<li>{html.escape(w)}</li>" for w in result["inception"]["overall"]["warnings"]
    )
    distances = pd.DataFrame(result["morphology"]["distances"])
    protocol = "".join(
        f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in result["protocol"].items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>angiosynth evaluation</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>Evaluation of synthetic DSA frames</h1>
<p>{inputs["n_synthetic"]} synthetic frames ({inputs["synthetic_size"]} px) from
<code>{html.escape(inputs["samples"])}</code> against {inputs["n_real"]} real arterial frames of the
<b>{html.escape(inputs["options"]["split"])}</b> split of <code>{html.escape(inputs["real"])}</code>
({inputs["n_train"]} training frames for memorisation).</p>
<h2>Summary</h2>{html_table(summary)}
<p>FID: torch-fidelity on Inception-V3 pool3 features, with the median and 95 % interval of
{result["inception"]["overall"]["fid_bootstrap"]["draws"]} bootstrap draws; KID: mean over subsets;
MMD: Gaussian kernel, median-heuristic bandwidth, x10 as in CAS-GAN's table; condition accuracy:
share of samples the view classifier labels as prompted; domain FD: Frechet distance in the view
classifier's feature space; near-copy share: samples closer to a training frame than 99 % of real
test frames are.</p>
<ul>{warnings_html}</ul>
{
        html_figure(
            figures["fid"],
            "FID per condition; green: real frames vs training frames of the same view (floor); "
            "red dashed: vs as many training frames of the other views",
        )
    }
<h2>Samples beside real frames</h2>{html_figure(figures["grid"], "real (left), synthetic (right)")}
<h2>Condition accuracy</h2>
<p>View classifier on real {html.escape(inputs["options"]["split"])} frames:
{html.escape(str(accuracy.get("real_" + inputs["options"]["split"])))}</p>
{html_figure(figures["confusion"], "prompted condition x classified view (counts)")}
<h2>Memorisation</h2>
<p>{memo["flagged"]} of {memo["n_samples"]} samples flagged ({100 * memo["flagged_share"]:.1f} %);
thresholds: feature {memo["feature"]["threshold"]:.4g}, pixel {memo["pixel"]["threshold"]:.4g}
(1st percentile of real test -> train distances).</p>
{html_figure(figures["distances"], "nearest-training-frame distances")}
{html_figure(figures["near"], "no sample is flagged as a near-copy")}
<h2>Vessel morphology</h2>{html_table(distances)}
{html_figure(figures["morphology"], "vessel features, real vs synthetic, per condition")}
<h2>Protocol</h2><ul>{protocol}</ul>
</body></html>
"""
