"""Tests for the multi-frame XA DICOM writer."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import XRayAngiographicImageStorage, generate_uid

from angiosynth.dicom.writing import DicomDataError
from angiosynth.errors import AngiosynthError, OptionError
from angiosynth.phantom.dicom_writer import XASeriesInfo, write_xa_series

# pydicom warns (UserWarning) about values invalid for their VR: treat that as a failure.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

N_FRAMES, ROWS, COLS = 4, 64, 64


def make_info(**overrides: object) -> XASeriesInfo:
    """A small, well-formed XASeriesInfo; keyword arguments replace fields."""
    info = XASeriesInfo(
        patient_name="PHANTOM^ALPHA",
        patient_id="SYN0001",
        patient_birth_date="19600412",
        patient_sex="F",
        study_uid=generate_uid(),
        study_id="1",
        study_date="20240102",
        study_time="101500",
        accession_number="ACC0001",
        study_description="Cerebral angiography",
        series_uid=generate_uid(),
        series_number=3,
        series_description="L ICA AP",
        protocol_name="Cerebral DSA 3 fps",
        sop_instance_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
        plane="A",
        primary_angle=12.34,
        secondary_angle=-7.86,
        frame_time_ms=333.3333,
        mask_frames=(1, 2),
        imager_pixel_spacing_mm=0.154,
        source_to_detector_mm=1195.5,
        source_to_patient_mm=785.0,
        kvp=78.0,
        tube_current_ma=312.4,
        exposure_time_ms=81.6,
        shutter_edges=(4, 60, 3, 62),
        manufacturer="ANGIOSYNTH",
        model_name="Phantom Biplane",
        institution_name="Synthetic Hospital",
        laterality="L",
        acquisition_time="101532.250000",
        other_plane_sop_instance_uid=generate_uid(),
    )
    return dataclasses.replace(info, **overrides)


def make_frames(bits_stored: int = 12, seed: int = 0) -> np.ndarray:
    """Random (F, H, W) uint16 frames using the full bits_stored range."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**bits_stored, size=(N_FRAMES, ROWS, COLS), dtype=np.uint16)


@pytest.mark.parametrize(("plane", "bits_stored"), [("A", 12), ("B", 10), ("A", 8), ("B", 16)])
def test_round_trip(tmp_path: Path, plane: str, bits_stored: int) -> None:
    info = make_info(plane=plane, primary_angle=-30.04, secondary_angle=15.06)
    frames = make_frames(bits_stored)
    path = tmp_path / "nested" / "dir" / "series.dcm"

    write_xa_series(path, frames, info, bits_stored=bits_stored)

    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == XRayAngiographicImageStorage
    assert ds.SOPInstanceUID == info.sop_instance_uid
    assert ds.Modality == "XA"
    assert ds.NumberOfFrames == N_FRAMES
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, bits_stored, bits_stored - 1)
    np.testing.assert_array_equal(ds.pixel_array, frames)
    assert float(ds.PositionerPrimaryAngle) == pytest.approx(-30.0)
    assert float(ds.PositionerSecondaryAngle) == pytest.approx(15.1)
    assert ds.ImageType[2] == f"BIPLANE {plane}"
    assert float(ds.FrameTime) == pytest.approx(info.frame_time_ms, abs=1e-4)
    assert ds.FrameIncrementPointer == 0x00181063
    mask = ds.MaskSubtractionSequence[0]
    assert mask.MaskOperation == "AVG_SUB"
    assert list(mask.MaskFrameNumbers) == list(info.mask_frames)
    assert list(mask.ApplicableFrameRange) == [3, N_FRAMES]
    assert ds.RecommendedViewingMode == "SUB"
    assert ds.PixelIntensityRelationship == "LIN"
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == info.other_plane_sop_instance_uid
    assert "SYNTHETIC PHANTOM" in ds.ImageComments
    assert ds.DeviceSerialNumber == "SYNTHETIC PHANTOM"
    assert sorted(p.name for p in path.parent.iterdir()) == ["series.dcm"]


def test_ds_values_fit_sixteen_characters(tmp_path: Path) -> None:
    info = make_info(frame_time_ms=1000.0 / 7.5, source_to_patient_mm=1000.0 / 1.3)
    path = tmp_path / "series.dcm"

    write_xa_series(path, make_frames(), info)

    ds = pydicom.dcmread(path)
    elements = [e for e in ds.iterall() if e.VR == "DS"]
    strings = [str(v) for e in elements for v in (e.value if e.VM > 1 else [e.value])]
    assert len(strings) > len(elements)  # multi-valued DS (ImagerPixelSpacing) flattened
    assert all(len(s) <= 16 for s in strings), strings


@pytest.mark.parametrize(
    ("angles", "expected"),
    [((0.0, 0.0), ["L", "F"]), ((90.0, 0.0), ["P", "F"]), ((-90.0, 0.0), ["A", "F"])],
)
def test_patient_orientation(
    tmp_path: Path, angles: tuple[float, float], expected: list[str]
) -> None:
    info = make_info(primary_angle=angles[0], secondary_angle=angles[1])
    path = tmp_path / "series.dcm"

    write_xa_series(path, make_frames(), info)

    assert list(pydicom.dcmread(path).PatientOrientation) == expected


def test_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "series.dcm"
    path.write_bytes(b"old content")

    write_xa_series(path, make_frames(seed=1), make_info())

    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, make_frames(seed=1))
    assert [p.name for p in tmp_path.iterdir()] == ["series.dcm"]


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
@pytest.mark.parametrize(("plane", "bits_stored", "laterality"), [("A", 12, "L"), ("B", 8, "")])
def test_dciodvfy_reports_no_errors(
    tmp_path: Path, plane: str, bits_stored: int, laterality: str
) -> None:
    path = tmp_path / "series.dcm"
    write_xa_series(
        path, make_frames(bits_stored), make_info(plane=plane, laterality=laterality), bits_stored
    )

    result = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=60
    )

    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(lines)
    assert "XAImage" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("frames", "bits_stored", "message"),
    [
        (make_frames().astype(np.int32), 12, "dtype uint16"),
        (make_frames().astype(np.float32), 12, "dtype uint16"),
        (np.full((N_FRAMES, ROWS, COLS), 4096, dtype=np.uint16), 12, "does not fit"),
        (np.full((N_FRAMES, ROWS, COLS), 256, dtype=np.uint16), 8, "does not fit"),
        (make_frames()[0], 12, "3-D"),
        (make_frames(), 14, "bits_stored"),
        (np.zeros((0, ROWS, COLS), dtype=np.uint16), 12, "empty"),
    ],
)
def test_invalid_frames_raise_and_write_nothing(
    tmp_path: Path, frames: np.ndarray, bits_stored: int, message: str
) -> None:
    path = tmp_path / "out" / "series.dcm"

    with pytest.raises(ValueError, match=message):
        write_xa_series(path, frames, make_info(), bits_stored=bits_stored)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"plane": "C"}, "plane"),
        ({"mask_frames": ()}, "mask_frames"),
        ({"mask_frames": (0, 1)}, "mask_frames"),
        ({"mask_frames": (N_FRAMES + 1,)}, "mask_frames"),
        ({"shutter_edges": (1, COLS + 1, 1, ROWS)}, "shutter_edges"),
        ({"laterality": "X"}, "laterality"),
        ({"other_plane_sop_instance_uid": ""}, "other_plane_sop_instance_uid"),
        ({"frame_time_ms": 0.0}, "frame_time_ms"),
    ],
)
def test_invalid_info_raises_and_writes_nothing(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    path = tmp_path / "series.dcm"

    with pytest.raises(ValueError, match=message):
        write_xa_series(path, make_frames(), make_info(**overrides))

    assert list(tmp_path.iterdir()) == []


def test_invalid_input_raises_angiosynth_errors(tmp_path: Path) -> None:
    path = tmp_path / "series.dcm"

    with pytest.raises(OptionError):
        write_xa_series(path, make_frames(), make_info(), bits_stored=14)
    with pytest.raises(DicomDataError) as caught:
        write_xa_series(path, make_frames()[0], make_info())
    assert isinstance(caught.value, AngiosynthError)
    with pytest.raises(DicomDataError):
        write_xa_series(path, make_frames(), make_info(laterality="X"))

    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def partial_save(self: Dataset, filename: Path, *args: object, **kwargs: object) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_as", partial_save)
    path = tmp_path / "series.dcm"

    with pytest.raises(OSError, match="disk full"):
        write_xa_series(path, make_frames(), make_info())

    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "series.dcm"
    write_xa_series(path, make_frames(seed=1), make_info())
    before = path.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr("angiosynth.runfiles.os.replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        write_xa_series(path, make_frames(seed=2), make_info())

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["series.dcm"]
