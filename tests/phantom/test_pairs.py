"""Phantom pairs: each frame's no-contrast twin, written without changing anything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from angiosynth.dicom.xa import read_xa

if TYPE_CHECKING:
    from conftest import Archive


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def _twins(archive: Archive, series_uid: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(archive.root / "pairs" / f"{series_uid}.npz") as data:
        return data["noncontrast"], data["shutter"]


def test_pairs_change_no_byte_of_the_frames_masks_or_truth(
    archive: Archive, pairs_archive: Archive
) -> None:
    for folder in ("dicom", "masks"):
        plain, paired = _files(archive.root, folder), _files(pairs_archive.root, folder)
        assert plain.keys() == paired.keys() and len(plain) > 0
        for name in plain:
            assert plain[name] == paired[name], name
    for name in ("ground_truth.parquet", "annotations.csv"):
        assert (archive.root / name).read_bytes() == (pairs_archive.root / name).read_bytes()
    assert not (archive.root / "pairs").exists()
    manifests = [json.loads((a.root / "manifest.json").read_text())
                 for a in (archive, pairs_archive)]  # fmt: skip
    assert [m.pop("pairs") for m in manifests] == [False, True]
    assert manifests[0] == manifests[1]


def test_one_pair_file_per_series_with_the_frames_shape_and_shutter(pairs_archive: Archive) -> None:
    truth = pairs_archive.truth
    assert {p.stem for p in (pairs_archive.root / "pairs").iterdir()} == set(truth["series_uid"])
    for uid, rows in truth.groupby("series_uid"):
        twins, shutter = _twins(pairs_archive, uid)
        series = read_xa(pairs_archive.root / rows["file"].iloc[0])
        assert twins.dtype == np.uint16 and twins.shape == series.frames.shape
        assert shutter.shape == (4,) and tuple(int(v) for v in shutter) == series.shutter


def test_mask_frames_equal_their_twins_exactly(pairs_archive: Archive) -> None:
    for uid, rows in pairs_archive.truth.groupby("series_uid"):
        twins, _ = _twins(pairs_archive, uid)
        frames = pydicom.dcmread(pairs_archive.root / rows["file"].iloc[0]).pixel_array
        mask = rows["is_mask"].to_numpy()
        assert mask.sum() >= 1
        np.testing.assert_array_equal(twins[mask], frames[mask], err_msg=uid)


def test_twins_of_arterial_frames_lack_only_the_contrast(pairs_archive: Archive) -> None:
    """Vessels absorb: the frame is darker than its twin there (by tens of stored values at
    12 bits); away from vessels and veins the two differ only by the noise's rescaling."""
    checked = 0
    for uid, rows in pairs_archive.truth.groupby("series_uid"):
        arterial = rows["is_arterial"].to_numpy()
        if not arterial.any():
            continue
        twins, _ = _twins(pairs_archive, uid)
        frames = pydicom.dcmread(pairs_archive.root / rows["file"].iloc[0]).pixel_array
        with np.load(pairs_archive.root / "masks" / f"{uid}.npz") as data:
            labels = data["labels"][arterial]
        gain = twins[arterial].astype(float) - frames[arterial].astype(float)
        assert gain[labels > 0].mean() > 20, uid
        assert (gain[labels > 0] >= -3).mean() > 0.99, uid
        assert np.abs(gain[labels == 0]).mean() < 1.0, uid
        checked += 1
    assert checked >= 4


def test_pairs_are_the_same_with_two_workers(
    pairs_archive: Archive, archive_writer, tmp_path: Path
) -> None:
    parallel = archive_writer(tmp_path / "archive", pairs=True, workers=2)

    assert _files(parallel.root, "pairs") == _files(pairs_archive.root, "pairs")
