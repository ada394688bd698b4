"""Header-only reading of DICOM files for curation: fields, plane identification, errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    EnhancedXAImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    XRayAngiographicImageStorage,
    generate_uid,
)

from angiosynth.dicom.headers import Header, read_header
from angiosynth.dicom.xa import DicomReadError

if TYPE_CHECKING:
    from conftest import Archive


def _write(path: Path, sop_class=XRayAngiographicImageStorage, pixels: bool = True, **attrs):
    """A small DICOM file with the given SOP class, optional 2-frame pixel data and attributes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if pixels:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 8
        ds.NumberOfFrames = 2
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.zeros((2, 8, 8), dtype="<u2").tobytes()
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_read_header_of_phantom_files(archive: Archive) -> None:
    for file, rows in archive.truth.groupby("file"):
        path = archive.root / file
        first = rows.iloc[0]
        ds = pydicom.dcmread(path, stop_before_pixels=True)

        header = read_header(path)

        assert isinstance(header, Header) and header.path == path
        assert header.sop_class == "XA"
        assert header.series_uid == first["series_uid"] and header.study_uid == first["study_uid"]
        assert header.sop_uid == first["sop_instance_uid"]
        assert header.patient_id == first["patient_id"]
        assert header.patient_name == f"PHANTOM^PATIENT{first['patient_id'][-5:]}"
        assert header.texts == (first["series_description"], str(ds.ProtocolName), "HEAD")
        assert header.description == first["series_description"]
        assert header.image_type == ("ORIGINAL", "PRIMARY", f"BIPLANE {first['plane']}")
        assert header.plane_identification == ""
        assert header.primary_angle == pytest.approx(first["primary_angle"], abs=0.051)
        assert header.secondary_angle == pytest.approx(first["secondary_angle"], abs=0.051)
        assert header.primary_increments == () and header.secondary_increments == ()
        assert header.n_frames == len(rows) == first["n_frames"]
        assert header.frame_time_ms == pytest.approx(float(ds.FrameTime))
        assert header.instance_number == 1
        assert header.transfer_syntax == ExplicitVRLittleEndian


def test_optional_fields_default_when_absent(tmp_path: Path) -> None:
    header = read_header(_write(tmp_path / "bare.dcm", NumberOfFrames=None))

    assert header.texts == ("", "", "")
    assert header.description == ""
    assert header.image_type == () and header.plane_identification == ""
    assert header.primary_angle is None and header.secondary_angle is None
    assert header.n_frames == 1 and header.frame_time_ms is None
    assert header.instance_number == 0
    assert header.patient_id == "" and header.patient_name == ""


def test_description_falls_back_to_protocol_name(tmp_path: Path) -> None:
    header = read_header(_write(tmp_path / "p.dcm", ProtocolName="VA links"))

    assert header.texts == ("", "VA links", "")
    assert header.description == "VA links"


def test_frame_time_vector_and_angle_increments(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "vector.dcm",
        NumberOfFrames=4,
        PixelData=np.zeros((4, 8, 8), dtype="<u2").tobytes(),
        FrameTimeVector=[0, 100, 120, 140],
        PositionerMotion="DYNAMIC",
        PositionerPrimaryAngle=-30,
        PositionerSecondaryAngle="12.5",
        PositionerPrimaryAngleIncrement=[0, 1.5, 1.5, 2],
        PositionerSecondaryAngleIncrement=[0, -1, -1, -1],
        InstanceNumber=7,
    )

    header = read_header(path)

    assert header.frame_time_ms == pytest.approx(120.0)  # mean of the increments after the first
    assert header.primary_angle == -30.0 and header.secondary_angle == 12.5
    assert header.primary_increments == (0.0, 1.5, 1.5, 2.0)
    assert header.secondary_increments == (0.0, -1.0, -1.0, -1.0)
    assert header.n_frames == 4 and header.instance_number == 7


def test_single_valued_increment_is_a_one_tuple(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.dcm", PositionerPrimaryAngleIncrement=2.5)

    assert read_header(path).primary_increments == (2.5,)


def test_enhanced_xa_plane_identification_from_shared_functional_groups(tmp_path: Path) -> None:
    characteristics = Dataset()
    characteristics.PlaneIdentification = "PLANE B"
    group = Dataset()
    group.XAXRFFrameCharacteristicsSequence = [characteristics]
    path = _write(
        tmp_path / "enhanced.dcm",
        sop_class=EnhancedXAImageStorage,
        SharedFunctionalGroupsSequence=[group],
    )

    header = read_header(path)

    assert header.sop_class == "Enhanced XA"
    assert header.plane_identification == "PLANE B"


def test_top_level_plane_identification(tmp_path: Path) -> None:
    path = _write(tmp_path / "top.dcm", sop_class=EnhancedXAImageStorage,
                  PlaneIdentification="MONOPLANE")  # fmt: skip

    assert read_header(path).plane_identification == "MONOPLANE"


def test_read_header_does_not_load_pixel_data(archive: Archive, monkeypatch) -> None:
    path = archive.root / archive.truth["file"].iloc[0]
    sizes = []
    real = pydicom.dcmread

    def spy(*args, **kwargs):
        ds = real(*args, **kwargs)
        element = ds.get_item("PixelData", keep_deferred=True)
        sizes.append(element.length)
        assert element.value is None  # deferred, not read
        return ds

    monkeypatch.setattr(pydicom, "dcmread", spy)
    read_header(path)

    assert sizes and sizes[0] > 10_000


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a DICOM file"),
        (b"hello, this is a text file\n" * 20, "not a DICOM file"),
        (bytes(range(256)) * 16, "not a DICOM file"),
    ],
    ids=["empty", "text", "binary"],
)
def test_non_dicom_files_raise(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "file.dcm"
    path.write_bytes(content)

    with pytest.raises(DicomReadError, match=reason) as info:
        read_header(path)

    assert str(info.value) == f"{path}: {reason}"


def test_non_xa_sop_class_raises(tmp_path: Path) -> None:
    path = _write(tmp_path / "sc.dcm", sop_class=SecondaryCaptureImageStorage)

    with pytest.raises(DicomReadError) as info:
        read_header(path)

    assert str(info.value) == f"{path}: unsupported SOP class {SecondaryCaptureImageStorage}"


def test_missing_sop_class_raises(tmp_path: Path) -> None:
    path = _write(tmp_path / "nosop.dcm", SOPClassUID=None)

    with pytest.raises(DicomReadError, match="unsupported SOP class missing"):
        read_header(path)


def test_xa_without_pixel_data_raises(tmp_path: Path) -> None:
    path = _write(tmp_path / "nopix.dcm", pixels=False)

    with pytest.raises(DicomReadError) as info:
        read_header(path)

    assert str(info.value) == f"{path}: no pixel data"


@pytest.mark.parametrize("missing", ["SeriesInstanceUID", "StudyInstanceUID"])
def test_missing_uids_raise(tmp_path: Path, missing: str) -> None:
    path = _write(tmp_path / "nouid.dcm", **{missing: None})

    with pytest.raises(DicomReadError, match=f"missing {missing}"):
        read_header(path)


@pytest.mark.parametrize("keep", [100, 300, 1000, 0.5])
def test_truncated_files(archive: Archive, tmp_path: Path, keep: float) -> None:
    data = (archive.root / archive.truth["file"].iloc[0]).read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])

    if keep >= 1:  # cut inside the header: a reason, never a crash
        with pytest.raises(DicomReadError, match=str(path)):
            read_header(path)
    else:  # cut inside the pixel data: the header is fine, decoding will fail later
        assert read_header(path).n_frames > 1


def test_malformed_numeric_value_raises_dicom_read_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.dcm", PositionerPrimaryAngle="12.5")
    data = path.read_bytes()
    element = b"\x18\x00\x10\x15DS\x04\x0012.5"
    assert data.count(element) == 1
    path.write_bytes(data.replace(element, b"\x18\x00\x10\x15DS\x04\x00n/a "))

    with pytest.raises(DicomReadError):
        read_header(path)
