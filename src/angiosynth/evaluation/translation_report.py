"""EVAL/report.html of a translation evaluation and its figures (see `evaluation.translation`)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from angiosynth.evaluation.fidelity import VesselFidelity
from angiosynth.evaluation.report import PAGE_STYLE, html_figure, html_table, save_figure
from angiosynth.runfiles import write_text_atomic

if TYPE_CHECKING:
    from angiosynth.evaluation.translation import ScoredTranslation

#: One translation in the pairs figure: its label, its (H, W) translations of the pairs (in
#: the truth's order) and their `VesselFidelity`.
Shown = tuple[str, Sequence[np.ndarray], VesselFidelity]

#: RGB of vessel pixels in `mask_comparison`: found and true, found only, true only (missed).
HIT, FALSE_HIT, MISS = (0.15, 0.8, 0.2), (0.95, 0.2, 0.1), (0.2, 0.45, 1.0)


def mask_comparison(
    vessel_map: np.ndarray, found: np.ndarray, truth: np.ndarray, opacity: float = 0.65
) -> np.ndarray:
    """A vessel map in grey with its mask compared with the true mask by colour.

    Args:
        vessel_map: (H, W) in [0, 1].
        found: (H, W) boolean vessel mask of the map.
        truth: (H, W) boolean true vessel mask.
        opacity: weight of the colours over the grey map.

    Returns:
        (H, W, 3) float32 RGB: HIT where both, FALSE_HIT where only `found`, MISS where only
        `truth`.
    """
    rgb = np.repeat(np.clip(vessel_map, 0, 1)[..., None], 3, axis=-1).astype(np.float32)
    for where, colour in (
        (found & truth, HIT),
        (found & ~truth, FALSE_HIT),
        (~found & truth, MISS),
    ):
        rgb[where] = (1 - opacity) * rgb[where] + opacity * np.asarray(colour, np.float32)
    return rgb


def shown_frames(n: int, k: int) -> np.ndarray:
    """At most `k` positions spread evenly over n frames."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def pairs_figure(truth, shown: Sequence[Shown], k: int, path: Path) -> str:
    """Draws `build_pairs_figure` into path (PNG, and PDF beside it); returns the PNG's name."""
    return save_figure(build_pairs_figure(truth, shown, k), path)


def build_pairs_figure(truth, shown: Sequence[Shown], k: int) -> Figure:
    """Rows of paired frames: the input, each translation, the true contrast frame, then the
    vessel map of each translation and of the truth with its mask against the true mask
    (Dice and clDice below each map).

    Args:
        truth: the `PairedTruth` of the n pairs ((n, H, W) noncontrast, contrast, vessel_mask).
        shown: (label, its n (H, W) translations, its `VesselFidelity`) per translation, the
            primary first (its fidelity also holds the truth's map).
        k: at most this many frames, spread evenly.

    Returns:
        The figure: one row per frame shown, 2 * len(shown) + 3 columns.
    """
    chosen = shown_frames(len(truth.contrast), k)
    maps = [(f"{label}: vessels", fidelity, "translation") for label, _, fidelity in shown]
    maps.append(("truth: vessels", shown[0][2], "truth"))
    titles = ["input", *(label for label, _, _ in shown), "true contrast", *(m[0] for m in maps)]
    width = len(titles)
    fig, axes = plt.subplots(len(chosen), width, figsize=(2.0 * width, 2.1 * len(chosen)),
                             squeeze=False)  # fmt: skip
    mask = np.asarray(truth.vessel_mask, bool)
    for row, i in zip(axes, chosen, strict=True):
        frames = [truth.noncontrast[i], *(outputs[i] for _, outputs, _ in shown), truth.contrast[i]]
        for ax, frame in zip(row[: len(frames)], frames, strict=True):
            ax.imshow(_grey(frame), cmap="gray", vmin=0, vmax=1)
        for ax, (_, fidelity, name) in zip(row[len(frames) :], maps, strict=True):
            _vessel_panel(ax, fidelity, name, i, mask[i])
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=8)
    _bare(axes)
    return fig


def _vessel_panel(ax, fidelity, name: str, i: int, true_mask: np.ndarray) -> None:
    """Frame i's vessel map of candidate `name` against the true mask, its scores below."""
    ax.imshow(mask_comparison(fidelity.maps[name][i], fidelity.masks[name][i], true_mask))
    scores = fidelity.table.iloc[i]
    ax.set_xlabel(
        f"Dice {scores[f'{name}_dice']:.2f}  clDice {scores[f'{name}_cl_dice']:.2f}", fontsize=7
    )


def _bare(axes: np.ndarray) -> None:
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if np.issubdtype(frame.dtype, np.integer):
        return frame / np.iinfo(frame.dtype).max
    return frame


def examples_figure(translated: Sequence[tuple[str, list]], real: list, k: int, path: Path) -> str:
    """Draws `build_examples_figure` into path (PNG and PDF); returns the PNG's name."""
    return save_figure(build_examples_figure(translated, real, k), path)


def build_examples_figure(translated: Sequence[tuple[str, list]], real: list, k: int) -> Figure:
    """One row per translation ((label, its (H, W) frames), the primary first), then a row of
    real angiograms; at most k frames per row, spread evenly (the same frames in every
    translation's row)."""
    rows = [(label, [frames[i] for i in shown_frames(len(frames), k)])
            for label, frames in translated]  # fmt: skip
    rows.append(("real", [real[i] for i in shown_frames(len(real), k)]))
    width = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), width, figsize=(1.6 * width, 1.7 * len(rows)),
                             squeeze=False)  # fmt: skip
    for ax_row, (label, images) in zip(axes, rows, strict=True):
        ax_row[0].set_ylabel(label, fontsize=8)
        for ax, image in zip(ax_row, images, strict=False):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    _bare(axes)
    for ax in axes.flat:
        ax.set_frame_on(False)
    return fig


def write_translation_report(
    out: Path, result: dict, scored: Sequence[ScoredTranslation], real, real_names, pairs,
    options,
) -> None:  # fmt: skip
    """Draws the figure and writes EVAL/report.html.

    Args:
        out: the evaluation folder.
        result: the content of metrics.json.
        scored: the `ScoredTranslation` of each translation, the primary first.
        real: the real angiograms, (H, W) frames in [0, 1].
        real_names: their names.
        pairs: (rows, PairedTruth) or None.
        options: the evaluation's `TranslationEvalOptions`.
    """
    out = Path(out)
    if pairs is not None:
        rows, truth = pairs
        shown = [(s.label, [s.translations.images[r] for r in rows], s.fidelity) for s in scored]
        figure = pairs_figure(truth, shown, options.figure_frames, out / "pairs.png")
        caption = (
            "input, each translation and the true contrast frame; vessel maps (input - frame, "
            "in the true DSA's window) of each translation and of the truth, their masks "
            "against the true mask: green found, red found but not a vessel, blue missed"
        )
    else:
        translated = [(s.label, s.translations.images) for s in scored]
        figure = examples_figure(translated, real, options.figure_frames, out / "examples.png")
        caption = "translated frames (a row per translation) above real angiograms; no paired truth"
    write_text_atomic(out / "report.html", _html(result, figure, caption))


def _items(mapping: dict) -> str:
    return "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in mapping.items()
    )


def _distribution(label: str, dist: dict) -> str:
    boot, kid, mmd = dist["fid_bootstrap"], dist["kid"], dist["mmd"]
    return (
        f"<p><b>{html.escape(label)}</b>: FID {dist['fid']:.4g} (bootstrap median "
        f"{boot['median']:.4g}, 95 % interval [{boot['low']:.4g}, {boot['high']:.4g}], "
        f"{boot['draws']} draws); KID {kid['mean']:.4g} &plusmn; {kid['std']:.4g} (cubic "
        f"kernel, subsets of {kid['subset_size']}); Gaussian MMD&sup2; {mmd['mmd2']:.4g}, "
        f"&times;10 = {mmd['mmd2_x10']:.4g} (median-heuristic bandwidth {mmd['bandwidth']:.4g}); "
        f"precision {dist['precision']:.3g}, recall {dist['recall']:.3g}.</p>"
    )


def _fidelity_text(paired: dict | None) -> str:
    if paired is None:
        return (
            "<p>No paired truth (translations of the phantom's no-contrast twins have it): "
            "only the distribution is measured.</p>"
        )
    identical = paired["translation"]["identical_frames"]
    return (
        f"<p>{paired['n_pairs']} translated frames with their exact truth "
        f"(<code>{html.escape(paired['truth_root'])}</code>). Vessel maps: the difference "
        "input - frame (log-windowed, so proportional to the DSA) in the true DSA's window, "
        "then the Frangi vessel mask of <code>evaluation.morphology</code>. <b>truth "
        "(ceiling)</b> is the true contrast frame through the same steps: the best the method "
        "can score; <b>input (no translation)</b> shows PSNR and SSIM without any vessel: "
        "both are dominated by the background and cannot tell vessel quality; Dice and clDice "
        f"can. PSNR and SSIM are inside the exposed field; {identical} frames identical to "
        "the truth (infinite PSNR) are counted, not averaged.</p>"
        f"<ul>{_items(paired['method'])}</ul>"
    )


def _translated_by(result: dict) -> str:
    """'<b>method</b> (<code>folder</code>)' of the primary, and of each compared translation."""
    inputs, compared = result["inputs"], result.get("compared", {})
    folders = {result.get("label", "translation"): inputs["translated"]}
    folders |= {label: entry["translated"] for label, entry in compared.items()}
    parts = [f"<b>{html.escape(label)}</b> (<code>{html.escape(folder)}</code>)"
             for label, folder in folders.items()]  # fmt: skip
    return parts[0] if len(parts) == 1 else f"{parts[0]}, compared with {', '.join(parts[1:])}"


def _html(result: dict, figure: str, caption: str) -> str:
    inputs = result["inputs"]
    summary = pd.DataFrame(result["summary"]).dropna(axis=1, how="all")
    warnings_html = "".join(f"<li>{html.escape(w)}</li>" for w in result["warnings"])
    dists = [(result.get("label", "translation"), result["distribution"])]
    dists += [(label, c["distribution"]) for label, c in result.get("compared", {}).items()]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>angiosynth translation evaluation</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>Evaluation of translated frames</h1>
<p>{inputs["n_translated"]} frames translated by {_translated_by(result)} against
{inputs["n_real"]} real angiograms of the <b>{html.escape(inputs["options"]["split"])}</b>
split of <code>{html.escape(inputs["real"])}</code>.</p>
<h2>Summary</h2>{html_table(summary)}
<ul>{warnings_html}</ul>
<h2>Distribution (Inception pool3)</h2>{"".join(_distribution(*d) for d in dists)}
<h2>Vessel fidelity</h2>{_fidelity_text(result["vessel_fidelity"])}
{html_figure(figure, caption)}
<h2>Protocol</h2><ul>{_items(result["protocol"])}</ul>
</body></html>
"""
