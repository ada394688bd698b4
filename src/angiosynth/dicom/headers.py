"""Header-only reading of DICOM files: what curation needs to group, label and filter series."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from angiosynth.dicom.xa import DicomReadError

#: SOP classes curation accepts: X-Ray Angiographic (classic and enhanced).
XA_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.12.1": "XA",
    "1.2.840.10008.5.1.4.1.1.12.1.1": "Enhanced XA",
}


@dataclass(frozen=True)
class Header:
    """The header fields of one DICOM XA file that curation uses.

    Attributes:
        path: the file.
        sop_class: "XA" or "Enhanced XA".
        series_uid, study_uid, sop_uid: identifiers.
        patient_id, patient_name: original identity (only ever stored pseudonymised).
        texts: Series Description, Protocol Name and Body Part Examined (empty when absent).
        image_type: Image Type values.
        plane_identification: Enhanced XA Plane Identification, "" when absent.
        primary_angle, secondary_angle: Positioner angles (degrees) or None.
        primary_increments, secondary_increments: per-frame angle increments (may be empty).
        n_frames: Number of Frames (1 for single-frame objects).
        frame_time_ms: Frame Time, or the mean of the Frame Time Vector, or None.
        instance_number: Instance Number (0 when absent), to order multi-file series.
        transfer_syntax: Transfer Syntax UID.
    """

    path: Path
    sop_class: str
    series_uid: str
    study_uid: str
    sop_uid: str
    patient_id: str
    patient_name: str
    texts: tuple[str, str, str]
    image_type: tuple[str, ...]
    plane_identification: str
    primary_angle: float | None
    secondary_angle: float | None
    primary_increments: tuple[float, ...]
    secondary_increments: tuple[float, ...]
    n_frames: int
    frame_time_ms: float | None
    instance_number: int
    transfer_syntax: str

    @property
    def description(self) -> str:
        """Series Description (or Protocol Name when the description is empty)."""
        return self.texts[0] or self.texts[1]


def read_header(path: Path) -> Header:
    """Reads the header of an XA file without its pixel data.

    Raises:
        DicomReadError: not DICOM, truncated header, not an XA image, or no pixel data.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=False, defer_size=256)
    except InvalidDicomError as err:
        raise DicomReadError(f"{path}: not a DICOM file") from err
    except Exception as err:  # truncated or malformed files raise many types
        raise DicomReadError(f"{path}: unreadable DICOM header ({err.__class__.__name__})") from err
    sop_class = XA_SOP_CLASSES.get(str(ds.get("SOPClassUID", "")))
    if sop_class is None:
        raise DicomReadError(f"{path}: unsupported SOP class {ds.get('SOPClassUID', 'missing')}")
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: no pixel data")
    missing = [k for k in ("SeriesInstanceUID", "StudyInstanceUID") if not ds.get(k)]
    if missing:
        raise DicomReadError(f"{path}: missing {', '.join(missing)}")
    try:
        return _header(path, ds, sop_class)
    except (ValueError, TypeError, OverflowError) as err:
        raise DicomReadError(f"{path}: malformed header value ({err})") from err


def _header(path: Path, ds: pydicom.Dataset, sop_class: str) -> Header:
    return Header(
        path=Path(path),
        sop_class=sop_class,
        series_uid=str(ds.SeriesInstanceUID),
        study_uid=str(ds.StudyInstanceUID),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        texts=tuple(str(ds.get(k, "") or "") for k in _TEXT_FIELDS),
        image_type=tuple(str(v).upper() for v in _values(ds.get("ImageType"))),
        plane_identification=_plane_identification(ds),
        primary_angle=_float(ds.get("PositionerPrimaryAngle")),
        secondary_angle=_float(ds.get("PositionerSecondaryAngle")),
        primary_increments=tuple(map(float, _values(ds.get("PositionerPrimaryAngleIncrement")))),
        secondary_increments=tuple(
            map(float, _values(ds.get("PositionerSecondaryAngleIncrement")))
        ),
        n_frames=int(ds.get("NumberOfFrames", 1) or 1),
        frame_time_ms=_frame_time(ds),
        instance_number=int(ds.get("InstanceNumber", 0) or 0),
        transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")),
    )


_TEXT_FIELDS = ("SeriesDescription", "ProtocolName", "BodyPartExamined")


def _values(value) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, pydicom.multival.MultiValue | list) else [value]


def _float(value) -> float | None:
    return None if value is None or value == "" else float(value)


def _frame_time(ds: pydicom.Dataset) -> float | None:
    if ds.get("FrameTime") not in (None, ""):
        return float(ds.FrameTime)
    vector = [float(v) for v in _values(ds.get("FrameTimeVector"))]
    increments = vector[1:] if len(vector) > 1 else vector
    return sum(increments) / len(increments) if increments else None


def _plane_identification(ds: pydicom.Dataset) -> str:
    """Plane Identification (0018,9457) from the top level or the shared functional groups."""
    if ds.get("PlaneIdentification"):
        return str(ds.PlaneIdentification).upper()
    for group in ds.get("SharedFunctionalGroupsSequence", []):
        for item in group.get("XAXRFFrameCharacteristicsSequence", []):
            if item.get("PlaneIdentification"):
                return str(item.PlaneIdentification).upper()
    return ""
