"""Digital subtraction: log subtraction of the mask and display windowing of DSA frames; the
log-exposure display of the native (unsubtracted) frames."""

from __future__ import annotations

import numpy as np

#: Grey level of the subtracted background in displayed DSA (vessels are darker).
DISPLAY_BACKGROUND = 0.6
#: Percentiles of a series' log exposure inside the shutter that map to black and white.
NATIVE_PERCENTILES = (0.5, 99.5)


def log_subtract(frames: np.ndarray, mask_frames: tuple[int, ...]) -> np.ndarray:
    """DSA of native frames whose values are linear in exposure.

    The mask is the average of the native mask frames (DICOM AVG_SUB); each DSA frame is
    log(mask) - log(frame), positive where contrast absorbs.

    Args:
        frames: (F, H, W) native frames, linear in detector exposure.
        mask_frames: 1-based numbers of the frames averaged into the mask.

    Returns:
        (F, H, W) float32 DSA frames (mask frames themselves are ~0).
    """
    if not mask_frames:
        raise ValueError("mask subtraction needs at least one mask frame")
    if min(mask_frames) < 1 or max(mask_frames) > len(frames):
        raise ValueError(f"mask frame numbers {mask_frames} outside 1..{len(frames)}")
    native = np.asarray(frames, dtype=np.float32)
    mask = native[[n - 1 for n in mask_frames]].mean(axis=0)
    return np.log(mask + 1.0) - np.log(native + 1.0)


def shutter_mask(shape: tuple[int, int], shutter: tuple[int, int, int, int] | None) -> np.ndarray:
    """(H, W) boolean mask of the pixels inside a 1-based (left, right, upper, lower) shutter."""
    if shutter is None:
        return np.ones(shape, dtype=bool)
    left, right, upper, lower = shutter
    inside = np.zeros(shape, dtype=bool)
    inside[upper - 1 : lower, left - 1 : right] = True
    return inside


def dsa_display(
    dsa: np.ndarray,
    shutter: tuple[int, int, int, int] | None = None,
    percentile: float = 99.5,
) -> np.ndarray:
    """Windows DSA for display: vessels dark on a mid-grey background, values in [0, 1].

    Args:
        dsa: (H, W) DSA frame, or (F, H, W) frames of one series windowed together (one scale
            for the whole series, so frames without contrast stay empty).
        shutter: optional 1-based (left, right, upper, lower) edges; outside is black.
        percentile: the contrast that maps to black, as a percentile of the DSA values inside
            the shutter.

    Returns:
        float32 image(s) in [0, 1] of the input's shape, background at DISPLAY_BACKGROUND.
    """
    inside = shutter_mask(dsa.shape[-2:], shutter)
    values = dsa[..., inside]
    scale = max(float(np.percentile(values, percentile)) if values.size else 0.0, 1e-3)
    return np.where(inside, dsa_window(dsa, scale), 0.0).astype(np.float32)


def dsa_window(dsa: np.ndarray, scale) -> np.ndarray:
    """The display rule of DSA: DISPLAY_BACKGROUND at 0, black at `scale` (a float, or an
    array broadcasting against `dsa`), clipped to [0, 1]."""
    return np.clip(DISPLAY_BACKGROUND * (1.0 - dsa / scale), 0.0, 1.0)


def log_exposure(frames: np.ndarray, relationship: str = "LIN", sign: int = 1) -> np.ndarray:
    """Native frames as log exposure, higher = more exposure (as `log_subtract` reads them).

    Args:
        frames: (F, H, W) stored native pixel values.
        relationship: Pixel Intensity Relationship: "LOG" values are logarithmic already and
            are only multiplied by `sign`; anything else is taken as linear in exposure (LIN) and
            becomes log(value + 1).
        sign: Pixel Intensity Relationship Sign of LOG values (+1: higher = more exposure).

    Returns:
        (F, H, W) float32 log exposure.
    """
    values = np.asarray(frames, dtype=np.float32)
    if relationship == "LOG":
        return (sign * values).astype(np.float32)
    return np.log(values + np.float32(1.0))


def native_window(
    log_frames: np.ndarray, shutter: tuple[int, int, int, int] | None = None
) -> tuple[float, float]:
    """The display window of a series: NATIVE_PERCENTILES of its log exposure inside the shutter.

    Args:
        log_frames: (F, H, W) log exposure of all frames of the series (or (H, W)).
        shutter: optional 1-based (left, right, upper, lower) edges.

    Returns:
        (low, high) log exposure shown black and white (high > low).
    """
    values = log_frames[..., shutter_mask(log_frames.shape[-2:], shutter)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, NATIVE_PERCENTILES))
    return low, max(high, low + 1e-6)


def native_display(
    log_frames: np.ndarray,
    window: tuple[float, float],
    shutter: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Windows native frames like an X-ray display: brighter = more exposure, values in [0, 1].

    Args:
        log_frames: (H, W) or (F, H, W) log exposure (`log_exposure`).
        window: (low, high) log exposure mapped to 0 and 1 (`native_window` of the series).
        shutter: optional 1-based (left, right, upper, lower) edges; outside is black.

    Returns:
        float32 image(s) in [0, 1] of the input's shape; contrast-filled vessels are dark.
    """
    low, high = window
    image = np.clip((log_frames - np.float32(low)) / np.float32(high - low), 0.0, 1.0)
    return np.where(shutter_mask(log_frames.shape[-2:], shutter), image, 0.0).astype(np.float32)
