"""Decoding one series into windowed, resized DSA frames and native frames.

DSA, by what the files say (recorded per series as `dsa_source`):
- ``as_is``: Image Type names a subtraction; frames are windowed between their 0.5th and 99.5th
  percentiles (inverted for MONOCHROME1);
- ``mask``: the Mask Subtraction Sequence names the mask frames; their average is subtracted,
  logarithmically for linear pixel values (LIN) and directly for logarithmic ones (LOG);
- ``first_frame``: no mask information; the first frame is the mask (a documented fallback).

Subtracted frames are windowed with one scale per series (the 99.5th percentile of the series'
contrast inside the shutter), so frames without contrast stay empty, then shown as vessels dark on
a grey background with black outside the shutter, padded to a square and resized.

Native frames (the unsubtracted frames, the two domains of contrast-free translation: mask frames
are non-contrast X-ray, later frames angiograms) are kept beside them as log exposure (log(v + 1)
of LIN values, sign * v of LOG values), windowed with one window per series (the 0.5th and 99.5th
percentiles inside the shutter, recorded as `native_window`) so brighter = more exposure, black
outside the shutter, and padded and resized exactly like the DSA frames. Already-subtracted
series have no native frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from angiosynth.dicom.subtraction import (
    dsa_display,
    log_exposure,
    log_subtract,
    native_display,
    native_window,
    shutter_mask,
)
from angiosynth.dicom.xa import DicomReadError, XASeries, read_xa

#: Stored frames are uint16: [0, 1] maps to [0, STORED_MAX].
STORED_MAX = 65535


@dataclass(frozen=True)
class DecodedSeries:
    """Frames of one series ready for storage.

    Attributes:
        frames: (F, size, size) uint16 windowed DSA frames.
        mask_frames: 1-based mask frame numbers used (empty for as_is).
        dsa_source: as_is, mask or first_frame.
        native: (F, size, size) uint16 windowed log-exposure native frames, or None (as_is).
        native_window: (low, high) log exposure shown black and white in `native`, or None.
    """

    frames: np.ndarray
    mask_frames: tuple[int, ...]
    dsa_source: str
    native: np.ndarray | None = None
    native_window: tuple[float, float] | None = None


def decode_series(files: list[Path], size: int) -> DecodedSeries:
    """Reads the files of one series (in instance order) and returns its windowed DSA frames
    and native frames.

    Raises:
        DicomReadError: when pixel data cannot be decoded or the frames do not match.
    """
    parts = [read_xa(path) for path in files]
    first = parts[0]
    shapes = {p.frames.shape[1:] for p in parts}
    if len(shapes) != 1:
        raise DicomReadError(f"{files[0]}: instances of the series have different frame sizes")
    native = np.concatenate([p.frames for p in parts]) if len(parts) > 1 else first.frames
    display, masks, source = _subtract_and_window(native, first)
    frames = _to_stored(square_resize(display, size))
    if first.already_subtracted:
        return DecodedSeries(frames=frames, mask_frames=masks, dsa_source=source)
    log = log_exposure(native, first.intensity_relationship, first.intensity_sign)
    window = native_window(log, first.shutter)
    stored = stored_native(log, window, first.shutter, size)
    return DecodedSeries(frames=frames, mask_frames=masks, dsa_source=source, native=stored,
                         native_window=window)  # fmt: skip


def stored_native(
    log_frames: np.ndarray,
    window: tuple[float, float],
    shutter: tuple[int, int, int, int] | None,
    size: int,
) -> np.ndarray:
    """Native frames as curation stores them: windowed, padded, resized, uint16.

    Args:
        log_frames: (F, H, W) log exposure (`dicom.subtraction.log_exposure`).
        window: (low, high) window of the series (`dicom.subtraction.native_window`).
        shutter: 1-based (left, right, upper, lower) edges, or None; black outside.
        size: side of the stored square frames.

    Returns:
        (F, size, size) uint16 frames in [0, STORED_MAX].
    """
    return _to_stored(square_resize(native_display(log_frames, window, shutter), size))


def _subtract_and_window(native: np.ndarray, first: XASeries):
    """(F, H, W) native frames -> (F, H, W) display frames in [0, 1], masks, source."""
    if first.already_subtracted:
        inside = shutter_mask(native.shape[-2:], first.shutter)
        lo, hi = np.percentile(native[..., inside], [0.5, 99.5])
        image = np.clip((native - lo) / max(hi - lo, 1e-6), 0, 1)
        image = 1.0 - image if first.monochrome1 else image
        return np.where(inside, image, 0.0).astype(np.float32), (), "as_is"
    masks, source = first.mask_frames, "mask"
    if not masks or min(masks) < 1 or max(masks) > len(native):
        masks, source = (1,), "first_frame"
    if first.intensity_relationship == "LOG":
        mask = native[[m - 1 for m in masks]].mean(axis=0)
        dsa = first.intensity_sign * (mask - native)
    else:
        dsa = log_subtract(native, masks)
    return dsa_display(dsa, first.shutter), masks, source


def square_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Pads (F, H, W) frames with black to a square and resizes each to (size, size)."""
    _, h, w = frames.shape
    side = max(h, w)
    if h != w:
        padded = np.zeros((len(frames), side, side), dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        padded[:, top : top + h, left : left + w] = frames
        frames = padded
    if side == size:
        return frames
    method = Image.Resampling.BOX if size < side else Image.Resampling.BILINEAR
    return np.stack(
        [np.asarray(Image.fromarray(f, mode="F").resize((size, size), method)) for f in frames]
    )


def _to_stored(frames: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(frames, 0, 1) * STORED_MAX).astype(np.uint16)
