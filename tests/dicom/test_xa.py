"""Reading XA series back: frames, mask frames, angles, shutter, errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, XRayAngiographicImageStorage, generate_uid

from angiosynth.dicom.xa import DicomReadError, read_xa

if TYPE_CHECKING:
    from conftest import Archive


def _write_minimal(path: Path, frames: np.ndarray | None, **attributes: object) -> Path:
    """A small XA-like file written with pydicom, optionally without pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    if frames is not None:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = frames.shape[-2:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if frames.ndim == 3:
            ds.NumberOfFrames = frames.shape[0]
        ds.PixelData = frames.astype("<u2").tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_read_xa_matches_the_archive_files(archive: Archive) -> None:
    for file, rows in archive.truth.groupby("file"):
        path = archive.root / file
        ds = pydicom.dcmread(path)

        series = read_xa(path)

        assert series.path == path
        assert series.frames.dtype == np.float32
        np.testing.assert_array_equal(series.frames, ds.pixel_array.astype(np.float32))
        n_mask = int(rows["is_mask"].sum())
        assert series.mask_frames == tuple(range(1, n_mask + 1))
        assert series.primary_angle == pytest.approx(rows["primary_angle"].iloc[0], abs=0.051)
        assert series.secondary_angle == pytest.approx(rows["secondary_angle"].iloc[0], abs=0.051)
        assert series.frame_time_ms == pytest.approx(float(ds.FrameTime))
        left, right, upper, lower = series.shutter
        size = archive.config.image_size
        assert 1 <= left < right <= size and 1 <= upper < lower <= size


def test_single_frame_file_reads_as_one_frame(tmp_path: Path) -> None:
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = _write_minimal(tmp_path / "one.dcm", frame)

    series = read_xa(path)

    assert series.frames.shape == (1, 3, 4)
    np.testing.assert_array_equal(series.frames[0], frame)
    assert series.mask_frames == ()
    assert series.frame_time_ms is None and series.primary_angle is None
    assert series.shutter is None


def test_single_mask_frame_number_and_shutter(tmp_path: Path) -> None:
    frames = np.ones((3, 4, 4), dtype=np.uint16)
    item = Dataset()
    item.MaskOperation = "AVG_SUB"
    item.MaskFrameNumbers = 2
    path = _write_minimal(
        tmp_path / "mask.dcm",
        frames,
        MaskSubtractionSequence=[item],
        ShutterShape="RECTANGULAR",
        ShutterLeftVerticalEdge=1,
        ShutterRightVerticalEdge=4,
        ShutterUpperHorizontalEdge=2,
        ShutterLowerHorizontalEdge=3,
        FrameTime="125.5",
        PositionerPrimaryAngle="-30.5",
        PositionerSecondaryAngle="12",
    )

    series = read_xa(path)

    assert series.mask_frames == (2,)
    assert series.shutter == (1, 4, 2, 3)
    assert series.frame_time_ms == pytest.approx(125.5)
    assert (series.primary_angle, series.secondary_angle) == (-30.5, 12.0)


def test_unreadable_files_raise_a_named_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"definitely not DICOM" * 10)
    no_pixels = _write_minimal(tmp_path / "header_only.dcm", None)

    for path in (garbage, no_pixels, tmp_path / "missing.dcm"):
        with pytest.raises(DicomReadError, match=path.name):
            read_xa(path)
    assert issubclass(DicomReadError, ValueError)
