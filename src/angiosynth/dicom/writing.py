"""Helpers every angiosynth DICOM writer shares: UIDs, file meta, pixels, atomic saving.

The phantom's multi-frame XA writer (`angiosynth.phantom.dicom_writer`) and the synthetic-sample
Secondary Capture writer (`angiosynth.dicom.synthetic`) build their datasets from these pieces,
so both write the same kind of file: uncompressed Explicit VR Little Endian, MONOCHROME2 pixels
in 16-bit OW words, deterministic UIDs, and a file that appears under its name only when
complete. This module imports nothing from `angiosynth.phantom` (imports go dicom -> phantom).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from angiosynth import __version__
from angiosynth.errors import AngiosynthError
from angiosynth.runfiles import atomic_path

#: The planes of a biplane C-arm (ImageType value 3 "BIPLANE A" / "BIPLANE B").
PLANES = ("A", "B")
#: Root of UUID-derived UIDs (PS3.5 B.2): "2.25." followed by the UUID as a decimal integer.
UUID_UID_ROOT = "2.25."
#: Largest value of the US attributes Rows and Columns.
MAX_ROWS_COLUMNS = 0xFFFF
#: Decimals of the written C-arm angles (PositionerPrimaryAngle / PositionerSecondaryAngle).
ANGLE_DECIMALS = 1


class DicomDataError(AngiosynthError, ValueError):
    """Pixels or header values that a DICOM writer cannot write; the message names the field.

    A `ValueError` too, so callers that caught the writers' former ValueError still work.
    """


def deterministic_uid(namespace: uuid.UUID, *parts: object) -> str:
    """A UID under the UUID-derived 2.25 root (PS3.5 B.2), the same for the same arguments.

    The parts are converted with `str` and joined with "|", so (1, 23) and (12, 3) give
    different UIDs. The result has at most 44 characters, within the 64 a UI value allows.

    Args:
        namespace: The uuid5 namespace of the writer (one per kind of output).
        *parts: What identifies the object: a prefix, seeds, indices, other UIDs.

    Returns:
        The UID, e.g. "2.25.123...".
    """
    name = "|".join(map(str, parts))
    return f"{UUID_UID_ROOT}{uuid.uuid5(namespace, name).int}"


def date_and_time(moment: datetime) -> tuple[str, str]:
    """DICOM DA and TM strings (YYYYMMDD, HHMMSS) of a moment."""
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")


def format_ds(value: float, decimals: int = 4) -> str:
    """Formats a number as a DICOM DS (decimal string) of at most 16 characters.

    The value is rounded to `decimals` places and trailing zeros are dropped ("-90", "0.154");
    negative zero becomes "0". A value that would need more than 16 characters is written by
    pydicom's `format_number_as_ds`.
    """
    text = f"{round(float(value), decimals) + 0.0:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if len(text) <= 16 else format_number_as_ds(float(value))


def file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    """File Meta Information for an uncompressed Explicit VR Little Endian file.

    Args:
        sop_class_uid: MediaStorageSOPClassUID (the dataset's SOPClassUID).
        sop_instance_uid: MediaStorageSOPInstanceUID (the dataset's SOPInstanceUID).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ANGIOSYNTH_{__version__}"[:16]
    return meta


def add_sop_common(
    ds: Dataset,
    sop_class_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    character_set: str,
) -> None:
    """Sets the SOP Common module and the InstanceNumber.

    Args:
        ds: The dataset being built.
        sop_class_uid: SOPClassUID.
        sop_instance_uid: SOPInstanceUID.
        instance_number: InstanceNumber (1-based).
        character_set: SpecificCharacterSet, e.g. "ISO_IR 100" (Latin-1), "ISO_IR 192" (UTF-8).
    """
    ds.SpecificCharacterSet = character_set
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number


def check_pixels(
    pixels: object,
    name: str,
    axes: Sequence[str],
    dtypes: Sequence[type],
    bits_stored: int | None = None,
) -> None:
    """Raises `DicomDataError` with a one-line message when `pixels` cannot be written.

    Args:
        pixels: The array to write; (..., H, W) with one letter of `axes` per dimension.
        name: Name of the argument in the messages ("image", "frames").
        axes: Names of the dimensions, e.g. ("H", "W") or ("F", "H", "W").
        dtypes: Accepted unsigned integer dtypes, e.g. (np.uint16,).
        bits_stored: When given, every value must be below 2**bits_stored.

    Raises:
        DicomDataError: If `pixels` is not a numpy array, has another dtype, another number of
            dimensions, no element, more than 65535 rows or columns, or too large a value.
    """
    if not isinstance(pixels, np.ndarray):
        raise DicomDataError(f"{name} must be a numpy array, got {type(pixels).__name__}")
    if pixels.dtype not in dtypes:
        allowed = " or ".join(np.dtype(d).name for d in dtypes)
        raise DicomDataError(
            f"{name} must have dtype {allowed}, got dtype {pixels.dtype} (shape {pixels.shape})"
        )
    if pixels.ndim != len(axes) or pixels.size == 0:
        raise DicomDataError(
            f"{name} must be a non-empty {len(axes)}-D ({', '.join(axes)}) array, "
            f"got shape {pixels.shape} (dtype {pixels.dtype})"
        )
    if max(pixels.shape[-2:]) > MAX_ROWS_COLUMNS:
        raise DicomDataError(
            f"{name} is too large for DICOM Rows/Columns, got shape {pixels.shape}"
        )
    if bits_stored is not None:
        peak = int(pixels.max())
        if peak >= 2**bits_stored:
            raise DicomDataError(f"{name} max {peak} does not fit in bits_stored={bits_stored}")


def add_image_pixel(ds: Dataset, pixels: np.ndarray, bits_stored: int) -> None:
    """Sets the Image Pixel module: MONOCHROME2, unsigned, 16 bits allocated, little endian OW.

    Args:
        ds: The dataset being built.
        pixels: (H, W) or (F, H, W) unsigned integer array (checked by `check_pixels`); frames
            are stored one after the other. NumberOfFrames is the caller's (Multi-frame module).
        bits_stored: BitsStored (HighBit is one less), at most 16.
    """
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OW", np.ascontiguousarray(pixels, dtype="<u2").tobytes())


def add_positioner_angles(ds: Dataset, primary_angle: float, secondary_angle: float) -> None:
    """Sets PositionerPrimaryAngle / PositionerSecondaryAngle (degrees, one decimal).

    Args:
        ds: The dataset being built.
        primary_angle: +LAO / -RAO.
        secondary_angle: +cranial / -caudal.
    """
    ds.PositionerPrimaryAngle = format_ds(primary_angle, decimals=ANGLE_DECIMALS)
    ds.PositionerSecondaryAngle = format_ds(secondary_angle, decimals=ANGLE_DECIMALS)


def save_dataset_atomic(ds: Dataset, path: Path) -> Path:
    """Writes `ds` (with its `file_meta`) as a DICOM file (PS3.10), atomically.

    The file is written under a hidden temporary name beside `path` and renamed over it
    (`angiosynth.runfiles.atomic_path`), so readers never see a partial file, a failed write
    leaves no file behind and keeps the one that was there.

    Args:
        ds: The complete dataset, file meta included.
        path: Destination file; missing parent folders are created, an existing file is replaced.

    Returns:
        `path`, as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
