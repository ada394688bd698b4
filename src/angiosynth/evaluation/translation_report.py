"""EVAL/report.html of a translation evaluation and its figures (see `evaluation.translation`)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from angiosynth.evaluation.report import PAGE_STYLE, html_figure, html_table, save_figure
from angiosynth.runfiles import write_text_atomic

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


def pairs_figure(pairs, fidelity, outputs, options, path: Path) -> str:
    """Rows of paired frames: input, translation, true contrast frame, and the vessel maps of
    the translation and of the truth with their masks against the true mask."""
    _, truth = pairs
    chosen = shown_frames(len(outputs), options.figure_frames)
    titles = ("input", "translation", "true contrast", "translation: vessels", "truth: vessels")
    fig, axes = plt.subplots(len(chosen), 5, figsize=(10, 2.1 * len(chosen)), squeeze=False)
    mask = np.asarray(truth.vessel_mask, bool)
    for row, i in zip(axes, chosen, strict=True):
        images = (_grey(truth.noncontrast[i]), outputs[i], _grey(truth.contrast[i]))
        for ax, image in zip(row[:3], images, strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        for ax, name in zip(row[3:], ("translation", "truth"), strict=True):
            ax.imshow(mask_comparison(fidelity.maps[name][i], fidelity.masks[name][i], mask[i]))
            scores = fidelity.table.iloc[i]
            ax.set_xlabel(
                f"Dice {scores[f'{name}_dice']:.2f}  clDice {scores[f'{name}_cl_dice']:.2f}",
                fontsize=7,
            )
    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if np.issubdtype(frame.dtype, np.integer):
        return frame / np.iinfo(frame.dtype).max
    return frame


def examples_figure(translated: list, real: list, k: int, path: Path) -> str:
    """Translations (top row) above real angiograms (bottom row), at most k of each."""
    rows = [
        [translated[i] for i in shown_frames(len(translated), k)],
        [real[i] for i in shown_frames(len(real), k)],
    ]
    width = max(len(r) for r in rows)
    fig, axes = plt.subplots(2, width, figsize=(1.6 * width, 3.4), squeeze=False)
    for ax_row, images, label in zip(axes, rows, ("translated", "real"), strict=True):
        ax_row[0].set_ylabel(label, fontsize=8)
        for ax, image in zip(ax_row, images, strict=False):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    return save_figure(fig, path)


def write_translation_report(
    out: Path, result: dict, translations, real, real_names, pairs, fidelity, options
) -> None:
    """Draws the figure and writes EVAL/report.html.

    Args:
        out: the evaluation folder.
        result: the content of metrics.json.
        translations: the `Translations` read.
        real: the real angiograms, (H, W) frames in [0, 1].
        real_names: their names.
        pairs: (rows, PairedTruth) or None.
        fidelity: the `VesselFidelity` of the pairs, or None.
        options: the evaluation's `TranslationEvalOptions`.
    """
    out = Path(out)
    if fidelity is not None:
        outputs = [translations.images[r] for r in pairs[0]]
        figure = pairs_figure(pairs, fidelity, outputs, options, out / "pairs.png")
        caption = (
            "input, translation and true contrast frame; vessel maps (input - frame, in the "
            "true DSA's window) of the translation and of the truth, their masks against the "
            "true mask: green found, red found but not a vessel, blue missed"
        )
    else:
        figure = examples_figure(translations.images, real, options.figure_frames,
                                 out / "examples.png")  # fmt: skip
        caption = "translated frames (top) and real angiograms (bottom); no paired truth"
    write_text_atomic(out / "report.html", _html(result, figure, caption))


def _items(mapping: dict) -> str:
    return "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in mapping.items()
    )


def _distribution(dist: dict) -> str:
    boot, kid, mmd = dist["fid_bootstrap"], dist["kid"], dist["mmd"]
    return (
        f"<p>FID {dist['fid']:.4g} (bootstrap median {boot['median']:.4g}, 95 % interval "
        f"[{boot['low']:.4g}, {boot['high']:.4g}], {boot['draws']} draws); KID "
        f"{kid['mean']:.4g} &plusmn; {kid['std']:.4g} (cubic kernel, subsets of "
        f"{kid['subset_size']}); Gaussian MMD&sup2; {mmd['mmd2']:.4g}, &times;10 = "
        f"{mmd['mmd2_x10']:.4g} (median-heuristic bandwidth {mmd['bandwidth']:.4g}); precision "
        f"{dist['precision']:.3g}, recall {dist['recall']:.3g}.</p>"
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


def _html(result: dict, figure: str, caption: str) -> str:
    inputs, dist = result["inputs"], result["distribution"]
    summary = pd.DataFrame(result["summary"])
    warnings_html = "".join(f"<li>{html.escape(w)}</li>" for w in result["warnings"])
    method = inputs["translate"].get("method", "unknown method")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>angiosynth translation evaluation</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>Evaluation of translated frames</h1>
<p>{inputs["n_translated"]} frames translated by <b>{html.escape(str(method))}</b>
(<code>{html.escape(inputs["translated"])}</code>) against {inputs["n_real"]} real angiograms
of the <b>{html.escape(inputs["options"]["split"])}</b> split of
<code>{html.escape(inputs["real"])}</code>.</p>
<h2>Summary</h2>{html_table(summary)}
<ul>{warnings_html}</ul>
<h2>Distribution (Inception pool3)</h2>{_distribution(dist)}
<h2>Vessel fidelity</h2>{_fidelity_text(result["vessel_fidelity"])}
{html_figure(figure, caption)}
<h2>Protocol</h2><ul>{_items(result["protocol"])}</ul>
</body></html>
"""
