"""Vessel fidelity of paired frames: vessel maps by log difference, Dice / clDice against the
true vessel mask, PSNR / SSIM against the true contrast frame (arrays only).

The vessel map of a translated frame is made as a DSA frame is (the method is described in
`evaluation.translation`, which applies it to translations of the phantom's no-contrast twins):
the difference input - output inside `morphology.exposed_field` of the input, windowed like
`dicom.subtraction.dsa_display` with one scale per frame from the truth, then
`morphology.vessel_mask`. The same is done for the true contrast frame (the ceiling of the
method) and for the input itself (no translation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from angiosynth.dicom.subtraction import dsa_window
from angiosynth.evaluation import morphology, vessels
from angiosynth.progress import Progress, tracked

#: The three things whose vessel maps are scored against the true mask.
CANDIDATES = ("translation", "truth", "input")

#: How a translated frame's vessel map is made (recorded in metrics.json).
VESSEL_MAP_METHOD = {
    "difference": "input - output (log-windowed frames: proportional to the DSA)",
    "window": "dsa_display's rule (background 0.6, vessels dark), one scale per frame: the "
    "true difference's percentile inside the field",
    "field": "morphology.exposed_field of the input",
    "mask": "morphology.vessel_mask (Frangi vesselness, contrast against the field's median)",
    "ceiling": "the true contrast frame through the same steps",
    "skeleton": f"skimage skeletonize(method={vessels.SKELETON_METHOD!r}) for clDice",
}


def as_unit(frames: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: integer frames are divided by their type's maximum."""
    frames = np.asarray(frames)
    if np.issubdtype(frames.dtype, np.integer):
        return (frames / np.iinfo(frames.dtype).max).astype(np.float32)
    return frames.astype(np.float32)


def frame_fields(inputs: np.ndarray) -> np.ndarray:
    """The measured area of each frame: `morphology.exposed_field` of its input.

    Args:
        inputs: (n, H, W) input (non-contrast) frames in [0, 1], black outside the shutter.

    Returns:
        (n, H, W) boolean.
    """
    return np.stack([morphology.exposed_field(frame) for frame in as_unit(inputs)])


def difference_scale(difference: np.ndarray, field: np.ndarray, percentile: float = 99.5):
    """The DSA window of each frame: the `percentile` of its difference inside its field
    (at least 1e-3, as in `dsa_display`).

    Args:
        difference: (n, H, W) input - output.
        field: (n, H, W) boolean.

    Returns:
        (n,) float64 scales.
    """
    scales = [
        np.percentile(d[f], percentile) if f.any() else 0.0
        for d, f in zip(difference, field, strict=True)
    ]
    return np.maximum(np.asarray(scales, dtype=np.float64), 1e-3)


def vessel_map(
    inputs: np.ndarray, outputs: np.ndarray, field: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """DSA-like vessel maps: input - output windowed as `dsa_display` with given scales.

    Args:
        inputs: (n, H, W) input frames in [0, 1].
        outputs: (n, H, W) translated (or true contrast) frames in [0, 1].
        field: (n, H, W) boolean measured area (black outside).
        scale: (n,) the difference that maps to black.

    Returns:
        (n, H, W) float32 in [0, 1]: background DISPLAY_BACKGROUND, vessels darker.
    """
    difference = as_unit(inputs) - as_unit(outputs)
    return np.where(field, dsa_window(difference, scale[:, None, None]), 0.0).astype(np.float32)


def vessel_masks(maps: np.ndarray, progress: Progress | None = None, desc: str = "vessel maps"):
    """`morphology.vessel_mask` of each (n, H, W) vessel map; (n, H, W) boolean."""
    return np.stack([morphology.vessel_mask(m) for m in tracked(maps, len(maps), desc, progress)])


def psnr_scores(outputs: np.ndarray, truth: np.ndarray, field: np.ndarray) -> np.ndarray:
    """PSNR (dB, data range 1) of each frame inside its field; inf where identical there.

    Args:
        outputs, truth: (n, H, W) frames in [0, 1].
        field: (n, H, W) boolean.

    Returns:
        (n,) float64.
    """
    values = []
    for out, true, inside in zip(as_unit(outputs), as_unit(truth), field, strict=True):
        a, b = true[inside].astype(np.float64), out[inside].astype(np.float64)
        identical = mean_squared_error(a, b) == 0
        values.append(np.inf if identical else peak_signal_noise_ratio(a, b, data_range=1.0))
    return np.asarray(values, dtype=np.float64)


def ssim_scores(outputs: np.ndarray, truth: np.ndarray, field: np.ndarray) -> np.ndarray:
    """SSIM (skimage, 7 x 7 window, data range 1) of each frame, its map averaged inside the
    field; (n,) float64."""
    values = []
    for out, true, inside in zip(as_unit(outputs), as_unit(truth), field, strict=True):
        _, full = structural_similarity(true, out, data_range=1.0, full=True)
        values.append(float(full[inside].mean()) if inside.any() else np.nan)
    return np.asarray(values, dtype=np.float64)


@dataclass
class VesselFidelity:
    """Vessel maps and scores of paired frames.

    Attributes:
        field: (n, H, W) boolean measured area.
        maps: candidate scored ("translation", "truth", "input") -> (n, H, W) vessel map.
        masks: candidate -> (n, H, W) boolean vessel mask of its map.
        table: one row per frame: `<candidate>_dice`, `_cl_dice`, `_psnr`, `_ssim` for each
            candidate scored.
    """

    field: np.ndarray
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    table: pd.DataFrame


def vessel_fidelity(
    inputs: np.ndarray,
    outputs: np.ndarray,
    contrast: np.ndarray,
    true_mask: np.ndarray,
    *,
    percentile: float = 99.5,
    candidates: tuple[str, ...] = CANDIDATES,
    progress: Progress | None = None,
    segment: Callable[[np.ndarray], np.ndarray] | None = None,
) -> VesselFidelity:
    """Dice, clDice, PSNR and SSIM of translated frames against their exact truth.

    Args:
        inputs: (n, H, W) the non-contrast frames that were translated, in [0, 1].
        outputs: (n, H, W) their translations.
        contrast: (n, H, W) the true contrast frames.
        true_mask: (n, H, W) the true vessel masks.
        percentile: see `difference_scale`.
        candidates: those of CANDIDATES to score (("translation",) for another translation of
            inputs whose truth and input are scored already: they do not depend on it).
        progress: optional progress-bar wrapper.
        segment: (n, H, W) frames -> (n, H, W) boolean vessel masks (a trained segmenter):
            each candidate is then also scored by `<candidate>_seg_dice` and `_seg_cl_dice`,
            its frame's segmentation (inside the field) against the true mask: an independent
            reading of the same frames, which does not depend on the difference to the input.

    Returns:
        The maps, masks and per-frame scores of the translation, the truth (the ceiling of
        the vessel-map method) and the input (no translation), of those in `candidates`;
        PSNR and SSIM of the truth against itself are left out (NaN).

    Raises:
        ValueError: a candidate not in CANDIDATES.
    """
    if unknown := set(candidates) - set(CANDIDATES):
        raise ValueError(f"candidates: {sorted(unknown)} not in {CANDIDATES}")
    inputs, outputs, contrast = as_unit(inputs), as_unit(outputs), as_unit(contrast)
    true_mask = np.asarray(true_mask, dtype=bool)
    field = frame_fields(inputs)
    scale = difference_scale(inputs - contrast, field, percentile)
    every = {"translation": outputs, "truth": contrast, "input": inputs}
    frames = {name: every[name] for name in candidates}
    maps = {name: vessel_map(inputs, f, field, scale) for name, f in frames.items()}
    masks = {name: vessel_masks(m, progress, f"vessel maps ({name})") for name, m in maps.items()}
    columns = {}
    for name in candidates:
        columns[f"{name}_dice"] = vessels.dice_scores(masks[name], true_mask)
        columns[f"{name}_cl_dice"] = vessels.cl_dice_scores(masks[name], true_mask)
        trivial = name == "truth"
        nan = np.full(len(inputs), np.nan)
        columns[f"{name}_psnr"] = nan if trivial else psnr_scores(frames[name], contrast, field)
        columns[f"{name}_ssim"] = nan if trivial else ssim_scores(frames[name], contrast, field)
        if segment is not None:
            found = np.asarray(segment(frames[name]), dtype=bool) & field
            columns[f"{name}_seg_dice"] = vessels.dice_scores(found, true_mask)
            columns[f"{name}_seg_cl_dice"] = vessels.cl_dice_scores(found, true_mask)
    return VesselFidelity(field, maps, masks, pd.DataFrame(columns))


def fidelity_summary(table: pd.DataFrame) -> dict:
    """Means over frames per candidate of the table (`VesselFidelity.table`): dice, cl_dice,
    psnr (over finite values; frames with infinite PSNR counted as `identical_frames`), ssim;
    None where not measured."""
    summary = {}
    for name in (n for n in CANDIDATES if f"{n}_dice" in table):
        psnr = table[f"{name}_psnr"].to_numpy()
        finite = psnr[np.isfinite(psnr)]
        summary[name] = {
            "dice": float(table[f"{name}_dice"].mean()),
            "cl_dice": float(table[f"{name}_cl_dice"].mean()),
            "psnr": float(finite.mean()) if finite.size else None,
            "ssim": _mean_or_none(table[f"{name}_ssim"]),
            "identical_frames": int(np.isposinf(psnr).sum()),
        }
        for score in ("seg_dice", "seg_cl_dice"):
            if f"{name}_{score}" in table:
                summary[name][score] = float(table[f"{name}_{score}"].mean())
    if "truth" in summary:
        summary["truth"].update(psnr=None, ssim=None, identical_frames=None)
    return summary


def _mean_or_none(values: pd.Series) -> float | None:
    return None if values.isna().all() else float(values.mean())
