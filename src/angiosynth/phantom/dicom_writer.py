"""Writes one multi-frame X-Ray Angiographic Image Storage file per simulated series.

The XA-specific modules are built here; what every angiosynth DICOM writer shares (file meta,
pixels, DS formatting, atomic saving) comes from `angiosynth.dicom.writing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import XRayAngiographicImageStorage

from angiosynth import __version__
from angiosynth.dicom.writing import (
    PLANES,
    DicomDataError,
    add_image_pixel,
    add_positioner_angles,
    add_sop_common,
    check_pixels,
    file_meta,
    format_ds,
    save_dataset_atomic,
)
from angiosynth.errors import OptionError


@dataclass(frozen=True)
class XASeriesInfo:
    """Everything the DICOM header of one simulated biplane-plane series says.

    Identifiers are fake but well formed. Angles in degrees (primary: +LAO / -RAO, secondary:
    +cranial / -caudal). Frame numbers are 1-based, as in DICOM.
    """

    patient_name: str
    patient_id: str
    patient_birth_date: str  # YYYYMMDD
    patient_sex: str  # "M" | "F" | "O"
    study_uid: str
    study_id: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    accession_number: str
    study_description: str
    series_uid: str
    series_number: int
    series_description: str
    protocol_name: str
    sop_instance_uid: str
    frame_of_reference_uid: str
    plane: str  # "A" or "B"
    primary_angle: float
    secondary_angle: float
    frame_time_ms: float
    mask_frames: tuple[int, ...]  # 1-based frame numbers averaged into the mask (AVG_SUB)
    imager_pixel_spacing_mm: float
    source_to_detector_mm: float
    source_to_patient_mm: float
    kvp: float
    tube_current_ma: float
    exposure_time_ms: float
    shutter_edges: tuple[int, int, int, int]  # left, right, upper, lower (1-based pixel edges)
    manufacturer: str
    model_name: str
    institution_name: str
    laterality: str  # "L", "R" or "" (unpaired / both)
    acquisition_time: str  # HHMMSS.ffffff of the first frame
    other_plane_sop_instance_uid: str  # the simultaneous series of the other plane (biplane pair)


VALID_BITS_STORED = (8, 10, 12, 16)
SYNTHETIC_MARKER = "SYNTHETIC PHANTOM"
_FRAME_TIME_TAG = 0x00181063
_CONTRAST_AGENT = "Iohexol 300"
_CONTRAST_MG_IODINE_PER_ML = 300
_HEAD = ("69536005", "SCT", "Head")
_LATERALITY_CODES = {"L": ("7771000", "SCT", "Left"), "R": ("24028007", "SCT", "Right")}
_OTHER_IMAGE_OF_BIPLANE_PAIR = ("121314", "DCM", "Other image of biplane pair")
_OBLIQUE_MIN_COSINE = 0.25  # a patient axis is named in an orientation when |cosine| exceeds this


def write_xa_series(
    path: Path, frames: np.ndarray, info: XASeriesInfo, bits_stored: int = 12
) -> None:
    """Writes one series as a multi-frame XA Image Storage file, atomically.

    The file is first written under a hidden temporary name in the destination folder and then
    renamed over ``path`` (`save_dataset_atomic`), so readers never see a partial file.

    Args:
        path: Destination file; missing parent folders are created, an existing file is replaced.
        frames: (F, H, W) uint16 native (unsubtracted) frames, values < 2**bits_stored.
        info: Header content of the series.
        bits_stored: DICOM Bits Stored, one of 8, 10, 12, 16.

    Raises:
        OptionError: (a ValueError) If ``bits_stored`` is not one of `VALID_BITS_STORED`.
        DicomDataError: (a ValueError) If ``frames`` or ``info`` is invalid.
        Nothing is written when one of these is raised.
    """
    _validate(frames, info, bits_stored)
    save_dataset_atomic(_build_dataset(frames, info, bits_stored), path)


def _validate(frames: np.ndarray, info: XASeriesInfo, bits_stored: int) -> None:
    """Raises OptionError or DicomDataError with a one-line message on the first problem."""
    if bits_stored not in VALID_BITS_STORED:
        raise OptionError(f"bits_stored must be one of {VALID_BITS_STORED}, got {bits_stored!r}")
    check_pixels(
        frames, "frames", axes=("F", "H", "W"), dtypes=(np.uint16,), bits_stored=bits_stored
    )
    n_frames, rows, cols = frames.shape
    if info.plane not in PLANES:
        raise DicomDataError(f"info.plane must be 'A' or 'B', got {info.plane!r}")
    if not info.mask_frames or not all(1 <= f <= n_frames for f in info.mask_frames):
        raise DicomDataError(
            f"info.mask_frames must be one or more frame numbers in 1..{n_frames}, "
            f"got {info.mask_frames}"
        )
    left, right, upper, lower = info.shutter_edges
    if not (1 <= left < right <= cols and 1 <= upper < lower <= rows):
        raise DicomDataError(
            f"info.shutter_edges {info.shutter_edges} do not fit a {rows}x{cols} image"
        )
    if info.laterality not in ("", "L", "R"):
        raise DicomDataError(f"info.laterality must be 'L', 'R' or '', got {info.laterality!r}")
    if not info.other_plane_sop_instance_uid:
        raise DicomDataError("info.other_plane_sop_instance_uid is empty (needed for BIPLANE A/B)")
    if info.frame_time_ms <= 0:
        raise DicomDataError(f"info.frame_time_ms must be > 0, got {info.frame_time_ms}")


def _build_dataset(frames: np.ndarray, info: XASeriesInfo, bits_stored: int) -> Dataset:
    """Assembles the complete XA dataset, file meta included."""
    ds = Dataset()
    _add_sop_common(ds, info)
    _add_patient(ds, info)
    _add_study(ds, info)
    _add_series(ds, info)
    _add_equipment(ds, info)
    _add_image(ds, info)
    add_image_pixel(ds, frames, bits_stored)
    _add_contrast_bolus(ds)
    _add_cine_and_multiframe(ds, info, n_frames=frames.shape[0])
    _add_mask(ds, info, n_frames=frames.shape[0])
    _add_display_shutter(ds, info)
    _add_xray_acquisition(ds, info, rows=frames.shape[1], cols=frames.shape[2])
    _add_positioner(ds, info)
    ds.file_meta = file_meta(XRayAngiographicImageStorage, info.sop_instance_uid)
    return ds


def _add_sop_common(ds: Dataset, info: XASeriesInfo) -> None:
    """SOP Common module (Latin-1); the one file of a series is instance 1."""
    add_sop_common(
        ds,
        XRayAngiographicImageStorage,
        info.sop_instance_uid,
        instance_number=1,
        character_set="ISO_IR 100",
    )


def _add_patient(ds: Dataset, info: XASeriesInfo) -> None:
    """Patient and Patient Study modules; the patient is marked as synthetic."""
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.patient_birth_date
    ds.PatientSex = info.patient_sex
    ds.PatientComments = SYNTHETIC_MARKER
    age = _patient_age(info.patient_birth_date, info.study_date)
    if age:
        ds.PatientAge = age


def _add_study(ds: Dataset, info: XASeriesInfo) -> None:
    """General Study module."""
    ds.StudyInstanceUID = info.study_uid
    ds.StudyDate = info.study_date
    ds.StudyTime = info.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = info.study_id
    ds.AccessionNumber = info.accession_number
    ds.StudyDescription = info.study_description


def _add_series(ds: Dataset, info: XASeriesInfo) -> None:
    """General Series and General Acquisition modules."""
    ds.Modality = "XA"
    ds.SeriesInstanceUID = info.series_uid
    ds.SeriesNumber = info.series_number
    ds.SeriesDate = info.study_date
    ds.SeriesTime = info.acquisition_time
    ds.SeriesDescription = info.series_description
    ds.ProtocolName = info.protocol_name
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = info.study_date
    ds.AcquisitionTime = info.acquisition_time


def _add_equipment(ds: Dataset, info: XASeriesInfo) -> None:
    """General Equipment module; the serial number marks the data as synthetic."""
    ds.Manufacturer = info.manufacturer
    ds.ManufacturerModelName = info.model_name
    ds.InstitutionName = info.institution_name
    ds.DeviceSerialNumber = SYNTHETIC_MARKER
    ds.SoftwareVersions = f"angiosynth {__version__}"


def _add_image(ds: Dataset, info: XASeriesInfo) -> None:
    """General Image module and the header part of the X-Ray Image module."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", f"BIPLANE {info.plane}"]
    ds.ContentDate = info.study_date
    ds.ContentTime = info.acquisition_time
    ds.PatientOrientation = list(_patient_orientation(info.primary_angle, info.secondary_angle))
    ds.ImageComments = f"{SYNTHETIC_MARKER}: simulated data, not from a patient"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LIN"
    ds.ReferencedImageSequence = [_other_plane_reference(info)]
    ds.AnatomicRegionSequence = [_anatomic_region(info.laterality)]


def _other_plane_reference(info: XASeriesInfo) -> Dataset:
    """Reference to the other image of the biplane pair, required for BIPLANE A/B."""
    item = Dataset()
    item.ReferencedSOPClassUID = XRayAngiographicImageStorage
    item.ReferencedSOPInstanceUID = info.other_plane_sop_instance_uid
    item.PurposeOfReferenceCodeSequence = [_code(*_OTHER_IMAGE_OF_BIPLANE_PAIR)]
    return item


def _anatomic_region(laterality: str) -> Dataset:
    """Coded anatomic region (head), with the laterality as a modifier when there is one.

    The General Series Laterality attribute is not used: DICOM allows it only for paired body
    parts, and the head is not one.
    """
    item = _code(*_HEAD)
    if laterality:
        item.AnatomicRegionModifierSequence = [_code(*_LATERALITY_CODES[laterality])]
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """A Code Sequence Macro item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _add_contrast_bolus(ds: Dataset) -> None:
    """Contrast/Bolus module: an intra-arterial iodinated agent."""
    ds.ContrastBolusAgent = _CONTRAST_AGENT
    ds.ContrastBolusRoute = "INTRA-ARTERIAL"
    ds.ContrastBolusIngredient = "IODINE"
    ds.ContrastBolusIngredientConcentration = format_ds(_CONTRAST_MG_IODINE_PER_ML)


def _add_cine_and_multiframe(ds: Dataset, info: XASeriesInfo, n_frames: int) -> None:
    """Cine and Multi-frame modules; frames are equally spaced by FrameTime."""
    rate = max(1, round(1000.0 / info.frame_time_ms))
    ds.NumberOfFrames = n_frames
    ds.FrameIncrementPointer = _FRAME_TIME_TAG
    ds.FrameTime = format_ds(info.frame_time_ms)
    ds.CineRate = rate
    ds.RecommendedDisplayFrameRate = rate
    ds.PreferredPlaybackSequencing = 0  # looping
    ds.StartTrim = 1
    ds.StopTrim = n_frames


def _add_mask(ds: Dataset, info: XASeriesInfo, n_frames: int) -> None:
    """Mask module: average of the mask frames subtracted from the frames after them."""
    item = Dataset()
    item.MaskOperation = "AVG_SUB"
    item.MaskFrameNumbers = list(info.mask_frames)
    first_contrast = max(info.mask_frames) + 1
    if first_contrast <= n_frames:
        item.ApplicableFrameRange = [first_contrast, n_frames]
    ds.MaskSubtractionSequence = [item]
    ds.RecommendedViewingMode = "SUB"


def _add_display_shutter(ds: Dataset, info: XASeriesInfo) -> None:
    """Display Shutter module: a rectangular collimator shutter."""
    left, right, upper, lower = info.shutter_edges
    ds.ShutterShape = "RECTANGULAR"
    ds.ShutterLeftVerticalEdge = left
    ds.ShutterRightVerticalEdge = right
    ds.ShutterUpperHorizontalEdge = upper
    ds.ShutterLowerHorizontalEdge = lower
    ds.ShutterPresentationValue = 0


def _add_xray_acquisition(ds: Dataset, info: XASeriesInfo, rows: int, cols: int) -> None:
    """X-Ray Acquisition module: technique factors and detector geometry."""
    spacing = info.imager_pixel_spacing_mm
    height_mm, width_mm = rows * spacing, cols * spacing
    ds.KVP = format_ds(info.kvp)
    ds.RadiationSetting = "GR"
    exposure_mas = info.tube_current_ma * info.exposure_time_ms / 1000.0
    ds.XRayTubeCurrent = round(info.tube_current_ma)
    ds.XRayTubeCurrentInuA = format_ds(info.tube_current_ma * 1000.0, decimals=1)
    ds.ExposureTime = round(info.exposure_time_ms)
    ds.ExposureTimeInuS = format_ds(info.exposure_time_ms * 1000.0, decimals=1)
    ds.Exposure = round(exposure_mas)
    ds.ExposureInuAs = round(exposure_mas * 1000.0)
    ds.AveragePulseWidth = format_ds(info.exposure_time_ms)
    ds.ImagerPixelSpacing = [format_ds(spacing), format_ds(spacing)]
    ds.FieldOfViewShape = "RECTANGLE"
    ds.FieldOfViewDimensions = [round(height_mm), round(width_mm)]
    ds.IntensifierSize = format_ds(math.hypot(height_mm, width_mm))


def _add_positioner(ds: Dataset, info: XASeriesInfo) -> None:
    """XA Positioner module: a static C-arm at the given angles."""
    ds.DistanceSourceToDetector = format_ds(info.source_to_detector_mm)
    ds.DistanceSourceToPatient = format_ds(info.source_to_patient_mm)
    ds.EstimatedRadiographicMagnificationFactor = format_ds(
        info.source_to_detector_mm / info.source_to_patient_mm
    )
    ds.PositionerMotion = "STATIC"
    add_positioner_angles(ds, info.primary_angle, info.secondary_angle)


def _patient_age(birth_date: str, study_date: str) -> str:
    """Age at the study as a DICOM AS string ("065Y"), or "" when a date is unusable."""
    try:
        born = datetime.strptime(birth_date, "%Y%m%d").date()
        seen = datetime.strptime(study_date, "%Y%m%d").date()
    except ValueError:
        return ""
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return f"{years:03d}Y" if 0 <= years <= 999 else ""


def _patient_orientation(primary_deg: float, secondary_deg: float) -> tuple[str, str]:
    """Patient directions of the image rows and columns for a C-arm at the given angles.

    At 0/0 (detector anterior, PA beam) the image is seen from the front: rows point to the
    patient's left, columns to the feet. LAO/RAO rotates about the head-feet axis, cranial/caudal
    tilts the detector towards the head/feet.
    """
    a, b = math.radians(primary_deg), math.radians(secondary_deg)
    detector = np.array([math.sin(a), -math.cos(a), 0.0])  # LPS: +x left, +y posterior, +z head
    row = np.array([math.cos(a), math.sin(a), 0.0])
    column = math.sin(b) * detector - math.cos(b) * np.array([0.0, 0.0, 1.0])
    return _direction_letters(row), _direction_letters(column)


def _direction_letters(vector: np.ndarray) -> str:
    """DICOM direction letters (L/R, P/A, H/F) of a unit vector, most significant first."""
    letters = (("R", "L"), ("A", "P"), ("F", "H"))
    order = np.argsort(-np.abs(vector), kind="stable")
    return "".join(
        letters[axis][int(vector[axis] > 0)]
        for axis in order
        if abs(vector[axis]) > _OBLIQUE_MIN_COSINE
    )
