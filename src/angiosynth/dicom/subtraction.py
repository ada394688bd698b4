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


def dsa_display(
    dsa: np.ndarray,
    shutter: tuple[int, int, int, int] | None = None,
    percentile: float = 99.5,
) -> np.ndarray:
    """Windows a DSA frame for display: vessels dark on a mid-grey background, values in [0, 1].

    Args:
        dsa: (H, W) DSA frame from `log_subtract`.
        shutter: optional 1-based (left, right, upper, lower) edges; outside is black.
        percentile: the contrast that maps to black, as a percentile of the DSA values.

    Returns:
        (H, W) float32 image in [0, 1], background at DISPLAY_BACKGROUND.
    """
    inside = np.ones(dsa.shape, dtype=bool)
    if shutter is not None:
        left, right, upper, lower = shutter
        inside[:] = False
        inside[upper - 1 : lower, left - 1 : right] = True
    scale = float(np.percentile(dsa[inside], percentile)) if inside.any() else 0.0
    scale = max(scale, 1e-3)
    image = np.clip(DISPLAY_BACKGROUND * (1.0 - dsa / scale), 0.0, 1.0)
    return np.where(inside, image, 0.0).astype(np.float32)
