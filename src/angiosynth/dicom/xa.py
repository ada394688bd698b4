"""Reading X-ray angiography series: pixel frames and the header fields the toolkit uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from angiosynth.errors import AngiosynthError


class DicomReadError(AngiosynthError, ValueError):
    """A DICOM file cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class XASeries:
    """Pixel data and acquisition facts of one multi-frame XA object.

    Attributes:
        path: the file it came from.
        frames: (F, H, W) stored pixel values as float32.
        mask_frames: 1-based mask frame numbers from the Mask Subtraction Sequence (may be empty).
        frame_time_ms: Frame Time, or None when absent.
        primary_angle, secondary_angle: Positioner angles in degrees (None when absent).
        shutter: rectangular display shutter (left, right, upper, lower), or None.
        intensity_relationship: Pixel Intensity Relationship (LIN, LOG, DISP or "").
        intensity_sign: Pixel Intensity Relationship Sign (+1: higher = more exposure).
        image_type: Image Type values, upper case.
        monochrome1: whether low values are displayed white.
    """

    path: Path
    frames: np.ndarray
    mask_frames: tuple[int, ...]
    frame_time_ms: float | None
    primary_angle: float | None
    secondary_angle: float | None
    shutter: tuple[int, int, int, int] | None
    intensity_relationship: str = ""
    intensity_sign: int = 1
    image_type: tuple[str, ...] = ()
    monochrome1: bool = False

    @property
    def already_subtracted(self) -> bool:
        """True when Image Type says the frames are a subtraction (taken as they are)."""
        return any(token in value for value in self.image_type for token in _SUBTRACTED)


_SUBTRACTED = ("SUBTRACT", "DSA")


def read_xa(path: Path) -> XASeries:
    """Reads a multi-frame XA file.

    Raises:
        DicomReadError: for unreadable files or files without pixel data.
    """
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for corrupt input
        raise DicomReadError(f"{path}: cannot read DICOM pixel data ({err})") from err
    frames = pixels[None] if pixels.ndim == 2 else pixels
    return XASeries(
        path=Path(path),
        frames=frames.astype(np.float32),
        mask_frames=_mask_frames(ds),
        frame_time_ms=_float(ds.get("FrameTime")),
        primary_angle=_float(ds.get("PositionerPrimaryAngle")),
        secondary_angle=_float(ds.get("PositionerSecondaryAngle")),
        shutter=_shutter(ds),
        intensity_relationship=str(ds.get("PixelIntensityRelationship", "") or "").upper(),
        intensity_sign=int(ds.get("PixelIntensityRelationshipSign", 1) or 1),
        image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or [])),
        monochrome1=str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1",
    )


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


def _mask_frames(ds: pydicom.Dataset) -> tuple[int, ...]:
    """Mask frame numbers of the first AVG_SUB / TID item of the Mask Subtraction Sequence."""
    for item in ds.get("MaskSubtractionSequence", []):
        numbers = item.get("MaskFrameNumbers")
        if numbers is not None:
            values = (
                numbers if isinstance(numbers, list | pydicom.multival.MultiValue) else [numbers]
            )
            return tuple(int(n) for n in values)
    return ()


def _shutter(ds: pydicom.Dataset) -> tuple[int, int, int, int] | None:
    shape = ds.get("ShutterShape")
    if shape is None or "RECTANGULAR" not in str(shape):
        return None
    return (
        int(ds.ShutterLeftVerticalEdge),
        int(ds.ShutterRightVerticalEdge),
        int(ds.ShutterUpperHorizontalEdge),
        int(ds.ShutterLowerHorizontalEdge),
    )
