"""Digital subtraction: log subtraction of the mask and display windowing of DSA frames."""

from __future__ import annotations

import numpy as np

#: Grey level of the subtracted background in displayed DSA (vessels are darker).
DISPLAY_BACKGROUND = 0.6


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
    image = np.clip(DISPLAY_BACKGROUND * (1.0 - dsa / scale), 0.0, 1.0)
    return np.where(inside, image, 0.0).astype(np.float32)
