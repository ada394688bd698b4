"""Tests for the synthetic-sample DICOM (Secondary Capture) writer."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from angiosynth.dicom.synthetic import SYNTHETIC_NOTICE, SyntheticImageInfo, write_synthetic_dicom
from angiosynth.dicom.writing import DicomDataError
from angiosynth.errors import AngiosynthError

# pydicom warns (UserWarning) about values invalid for their VR: treat that as a failure.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

ROWS, COLS = 48, 40
PROMPT = (
    "This is a posterior DSA scan taken in Plane B, "
    "with a primary angle of -90° and a secondary angle of 0°."
)


def make_info(**overrides: object) -> SyntheticImageInfo:
    """A well-formed SyntheticImageInfo; keyword arguments replace fields."""
    info = SyntheticImageInfo(
        prompt=PROMPT,
        circulation="posterior",
        plane="B",
        primary_angle=-90.0,
        secondary_angle=0.0,
        seed=1234,
        sampler="ddim",
        steps=50,
        guidance=7.5,
        model_hash="3f2a9c1e",
        index=0,
    )
    return dataclasses.replace(info, **overrides)


def make_image(dtype: type = np.uint16, seed: int = 0) -> np.ndarray:
    """A random (H, W) image over the dtype's full range, both extremes included."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    image = rng.integers(0, top, size=(ROWS, COLS), endpoint=True, dtype=dtype)
    image[0, 0], image[-1, -1] = 0, top
    return image


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_round_trip(tmp_path: Path, dtype: type) -> None:
    info = make_info(primary_angle=-30.04, secondary_angle=15.06, index=4)
    image = make_image(dtype)
    path = tmp_path / "nested" / "sample.dcm"

    assert write_synthetic_dicom(path, image, info) == path

    ds = pydicom.dcmread(path)
    bits = 8 * np.dtype(dtype).itemsize
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert ds.file_meta.MediaStorageSOPClassUID == SecondaryCaptureImageStorage
    assert ds.SOPInstanceUID == info.sop_instance_uid
    assert ds.Modality == "OT"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, bits, bits - 1)
    assert (ds.PhotometricInterpretation, ds.PixelRepresentation) == ("MONOCHROME2", 0)
    np.testing.assert_array_equal(ds.pixel_array, image)
    assert float(ds.PositionerPrimaryAngle) == pytest.approx(-30.0)
    assert float(ds.PositionerSecondaryAngle) == pytest.approx(15.1)
    assert ds.InstanceNumber == 5
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.ConversionType == "SYN"
    assert ds.BurnedInAnnotation == "NO"
    assert sorted(p.name for p in path.parent.iterdir()) == ["sample.dcm"]


def test_identity_and_synthetic_markers(tmp_path: Path) -> None:
    info = make_info()
    path = write_synthetic_dicom(tmp_path / "sample.dcm", make_image(), info)

    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) == "SYNTHETIC^ANGIOSYNTH"
    assert ds.PatientID == "SYNTHETIC"
    assert ds.PatientBirthDate == ""
    assert ds.PatientSex == ""
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod
    assert ds.SeriesDescription == "SYNTHETIC PC B -90/0"
    assert ds.Manufacturer == "angiosynth"
    assert ds.SoftwareVersions
    comments = ds.ImageComments
    assert SYNTHETIC_NOTICE in comments
    for text in (PROMPT, "Seed: 1234", "Sampler: ddim", "Steps: 50", "Guidance: 7.5", "3f2a9c1e"):
        assert text in comments
    assert "SYNTHETIC" in ds.DerivationDescription
    assert PROMPT in ds.DerivationDescription


def test_window_spans_image_range(tmp_path: Path) -> None:
    image = np.full((ROWS, COLS), 1000, dtype=np.uint16)
    image[0, 0] = 3000
    path = write_synthetic_dicom(tmp_path / "sample.dcm", image, make_info())

    ds = pydicom.dcmread(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    assert center - 0.5 - (width - 1) / 2 == pytest.approx(1000)
    assert center - 0.5 + (width - 1) / 2 == pytest.approx(3000)


def test_constant_image_has_valid_window(tmp_path: Path) -> None:
    image = np.zeros((ROWS, COLS), dtype=np.uint8)
    path = write_synthetic_dicom(tmp_path / "sample.dcm", image, make_info())

    assert float(pydicom.dcmread(path).WindowWidth) >= 1


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    image = make_image()
    first = write_synthetic_dicom(tmp_path / "a.dcm", image, make_info())
    second = write_synthetic_dicom(tmp_path / "b.dcm", image.copy(), make_info())

    assert first.read_bytes() == second.read_bytes()


def test_content_datetime_is_written(tmp_path: Path) -> None:
    info = make_info(content_datetime=datetime(2024, 5, 6, 7, 8, 9))
    ds = pydicom.dcmread(write_synthetic_dicom(tmp_path / "s.dcm", make_image(), info))

    assert (ds.ContentDate, ds.ContentTime) == ("20240506", "070809")
    assert (ds.StudyDate, ds.StudyTime) == ("20240506", "070809")


def test_uids_group_a_run_into_one_series(tmp_path: Path) -> None:
    infos = [make_info(index=i) for i in range(3)]
    datasets = [
        pydicom.dcmread(write_synthetic_dicom(tmp_path / f"{i}.dcm", make_image(seed=i), info))
        for i, info in enumerate(infos)
    ]

    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert all(ds.SOPInstanceUID.startswith("2.25.") for ds in datasets)
    other_run = make_info(seed=99)
    assert other_run.study_instance_uid != infos[0].study_instance_uid
    assert other_run.series_instance_uid != infos[0].series_instance_uid
    assert other_run.sop_instance_uid != infos[0].sop_instance_uid


def test_given_uids_are_used(tmp_path: Path) -> None:
    info = make_info(study_uid="1.2.3.4", series_uid="1.2.3.4.5")
    ds = pydicom.dcmread(write_synthetic_dicom(tmp_path / "s.dcm", make_image(), info))

    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3.4", "1.2.3.4.5")


def test_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sample.dcm"
    path.write_bytes(b"old content")

    write_synthetic_dicom(path, make_image(seed=1), make_info())

    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, make_image(seed=1))
    assert [p.name for p in tmp_path.iterdir()] == ["sample.dcm"]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (make_image().astype(np.int32), "dtype int32"),
        (make_image().astype(np.float32), "dtype float32"),
        (make_image().astype(np.int16), "dtype int16"),
        (np.zeros((2, ROWS, COLS), dtype=np.uint16), r"shape \(2, 48, 40\)"),
        (np.zeros(ROWS, dtype=np.uint8), r"shape \(48,\)"),
        (np.zeros((0, COLS), dtype=np.uint16), r"shape \(0, 40\)"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_invalid_image_raises_and_writes_nothing(
    tmp_path: Path, image: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_synthetic_dicom(tmp_path / "out" / "sample.dcm", image, make_info())

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"circulation": "venous"}, "circulation"),
        ({"plane": "C"}, "plane"),
        ({"primary_angle": float("nan")}, "angles"),
        ({"index": -1}, "index"),
    ],
)
def test_invalid_info_raises(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_info(**overrides)


def test_invalid_input_raises_an_angiosynth_error(tmp_path: Path) -> None:
    with pytest.raises(DicomDataError) as caught:
        write_synthetic_dicom(tmp_path / "s.dcm", make_image().astype(np.int32), make_info())
    assert isinstance(caught.value, AngiosynthError)
    assert isinstance(caught.value, ValueError)

    with pytest.raises(DicomDataError):
        make_info(plane="C")


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def partial_save(self: Dataset, filename: Path, *args: object, **kwargs: object) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_as", partial_save)

    with pytest.raises(OSError, match="disk full"):
        write_synthetic_dicom(tmp_path / "sample.dcm", make_image(), make_info())

    assert list(tmp_path.iterdir()) == []


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_dciodvfy_reports_no_errors(tmp_path: Path, dtype: type) -> None:
    path = write_synthetic_dicom(tmp_path / "sample.dcm", make_image(dtype), make_info())

    result = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=60
    )

    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert not errors, output
    assert "SCImage" in output
