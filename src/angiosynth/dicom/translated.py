"""Writes translated frames ("virtual contrast") as DICOM Secondary Capture images that are
clearly synthetic.

Like the generated samples (`dicom.synthetic`): SOP Class Secondary Capture, Modality ``OT``,
ImageType ``DERIVED\\SECONDARY``, ConversionType ``SYN``, the synthetic patient
``SYNTHETIC^ANGIOSYNTH``; the series description, image comments and derivation description
say that the image is a translation, from which input and by which model. UIDs are derived from
the info, so the same frame and info give byte-identical files.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from angiosynth import __version__
from angiosynth.dicom.synthetic import (
    DEFAULT_CONTENT_DATETIME,
    MANUFACTURER,
    SYNTHETIC_NOTICE,
    add_synthetic_patient,
    add_voi_lut,
)
from angiosynth.dicom.writing import (
    add_image_pixel,
    add_sop_common,
    check_pixels,
    date_and_time,
    deterministic_uid,
    file_meta,
    save_dataset_atomic,
)

_UID_NAMESPACE = uuid.UUID("6f0b8d2c-41a7-5e93-b0c6-2d9e7a13f584")
_MAX_LO, _MAX_ST, _MAX_LT = 64, 1024, 10240


@dataclass(frozen=True)
class TranslatedImageInfo:
    """How one translated frame was made.

    Attributes:
        source: the input's name (file name, or "frame_id:<n>" of a curated frame).
        method: the translation method (cyclegan, attentiongan, cut).
        model_hash: hash of the generator's weights.
        index: 0-based number of the frame in the translation run (InstanceNumber - 1).
    """

    source: str
    method: str
    model_hash: str
    index: int

    @property
    def series_uid(self) -> str:
        return deterministic_uid(_UID_NAMESPACE, "series", self.method, self.model_hash)

    @property
    def sop_uid(self) -> str:
        return deterministic_uid(_UID_NAMESPACE, "image", self.series_uid, self.source, self.index)


def write_translated_dicom(path: Path, image: np.ndarray, info: TranslatedImageInfo) -> Path:
    """Writes one translated frame, (H, W) uint16 or uint8, as a Secondary Capture image,
    atomically; returns `path`.

    Raises:
        DicomDataError: `image` is not a non-empty 2-D uint16 or uint8 array.
    """
    check_pixels(image, "image", axes=("H", "W"), dtypes=(np.uint16, np.uint8))
    ds = Dataset()
    add_sop_common(ds, SecondaryCaptureImageStorage, info.sop_uid,
                   instance_number=info.index + 1, character_set="ISO_IR 192")  # fmt: skip
    add_synthetic_patient(ds)
    _add_study_series_equipment(ds, info)
    _add_image(ds, info)
    add_image_pixel(ds, image, bits_stored=8 * image.dtype.itemsize)
    add_voi_lut(ds, image)
    ds.file_meta = file_meta(SecondaryCaptureImageStorage, info.sop_uid)
    return save_dataset_atomic(ds, path)


def _add_study_series_equipment(ds: Dataset, info: TranslatedImageInfo) -> None:
    date, time = date_and_time(DEFAULT_CONTENT_DATETIME)
    ds.StudyInstanceUID = deterministic_uid(_UID_NAMESPACE, "study", info.model_hash)
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "SYNTHETIC"
    ds.AccessionNumber = ""
    ds.StudyDescription = "SYNTHETIC angiosynth translations"
    ds.Modality = "OT"
    ds.SeriesInstanceUID = info.series_uid
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = f"SYNTHETIC virtual contrast ({info.method})"[:_MAX_LO]
    ds.BodyPartExamined = "HEAD"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "angiosynth translate"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "SYN"
    ds.ContentDate, ds.ContentTime = date, time


def _add_image(ds: Dataset, info: TranslatedImageInfo) -> None:
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.PatientOrientation = ""
    comments = [SYNTHETIC_NOTICE, f"Translated from: {info.source}", f"Method: {info.method}",
                f"Model hash: {info.model_hash}"]  # fmt: skip
    ds.ImageComments = "\n".join(comments)[:_MAX_LT]
    ds.DerivationDescription = (
        f"SYNTHETIC: virtual contrast by angiosynth {info.method} model {info.model_hash}, "
        f"translated from the non-contrast frame {info.source}"
    )[:_MAX_ST]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
