"""Native frames beside the DSA frames: windowed log exposure, native.zarr, has_native, the
series' window, resuming, and datasets curated before native frames were kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from angiosynth.curation.curate import SERIES_COLUMNS
from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.curation.frames import STORED_MAX, decode_series

from .helpers import edit_dicom, run_curate, write_log_series, write_series

N, SIDE = 6, 48
SHUTTER = (3, 46, 3, 46)  # left, right, upper, lower (1-based, inclusive)


def _inside() -> np.ndarray:
    left, right, upper, lower = SHUTTER
    inside = np.zeros((SIDE, SIDE), dtype=bool)
    inside[upper - 1 : lower, left - 1 : right] = True
    return inside


def _native_lin() -> np.ndarray:
    """(N, SIDE, SIDE) LIN frames: exposure 2000 .. 4000 across the field, a vessel (mu 0.5)
    from frame 3 on."""
    i0 = np.linspace(2000.0, 4000.0, SIDE)[None, None, :]
    mu = np.zeros((N, SIDE, SIDE))
    mu[2:, 20:40, 30:34] = 0.5
    return np.rint(i0 * np.exp(-mu)).astype(np.uint16)


def _windowed(log: np.ndarray) -> np.ndarray:
    """The documented window, written out: 0.5th / 99.5th percentile inside the shutter."""
    low, high = np.percentile(log[:, _inside()], [0.5, 99.5])
    image = np.clip((log - low) / (high - low), 0, 1)
    return np.rint(np.where(_inside(), image, 0.0) * STORED_MAX)


def test_lin_series_keeps_its_log_exposure_windowed_per_series(tmp_path: Path) -> None:
    native = _native_lin()
    path = write_series(tmp_path / "lin.dcm", native, shutter_edges=SHUTTER)

    decoded = decode_series([path], SIDE)

    log = np.log(native.astype(np.float64) + 1.0)
    low, high = np.percentile(log[:, _inside()], [0.5, 99.5])
    assert decoded.native_window == pytest.approx((low, high), rel=1e-6)
    assert decoded.native.shape == (N, SIDE, SIDE) and decoded.native.dtype == np.uint16
    np.testing.assert_allclose(decoded.native, _windowed(log), atol=2)
    assert np.all(decoded.native[:, ~_inside()] == 0)  # black outside the shutter
    # Brighter = more exposure (the field's right side); the vessel is darker than its surround
    # by log(e^0.5) / (high - low) of the range.
    assert decoded.native[0, 10, 40] > decoded.native[0, 10, 10]
    drop = (decoded.native[0, 30, 31].astype(float) - decoded.native[3, 30, 31]) / STORED_MAX
    assert drop == pytest.approx(0.5 / (high - low), abs=2e-3)


@pytest.mark.parametrize("sign", [1, -1])
def test_log_series_keeps_its_values_times_the_sign(tmp_path: Path, sign: int) -> None:
    stored = np.full((N, SIDE, SIDE), 3000 if sign == 1 else 1000, dtype=np.uint16)
    stored[2:, 20:40, 30:34] = 2000  # the vessel: less exposure whatever the sign
    stored[:, 5:10, 5:10] = 3500 if sign == 1 else 500  # a brighter (more exposed) patch
    path = write_log_series(tmp_path / "log.dcm", stored, sign, shutter_edges=SHUTTER)

    decoded = decode_series([path], SIDE)

    np.testing.assert_allclose(decoded.native, _windowed(sign * stored.astype(float)), atol=2)
    frame = decoded.native[3].astype(float)
    assert frame[7, 7] > frame[12, 12] > frame[30, 31]  # patch, background, vessel


def test_already_subtracted_series_has_no_native_frames(tmp_path: Path) -> None:
    dicom = tmp_path / "dicom"
    write_series(dicom / "lin.dcm", _native_lin(), shutter_edges=SHUTTER)
    subtracted = write_series(dicom / "sub.dcm", _native_lin(), shutter_edges=SHUTTER,
                              series_uid="2.25.2002", sop_instance_uid="2.25.3002")  # fmt: skip
    edit_dicom(subtracted, lambda ds: setattr(ds, "ImageType", ["DERIVED", "PRIMARY", "DSA"]))

    assert decode_series([subtracted], SIDE).native is None
    run_curate(dicom, tmp_path / "dataset")

    dataset = CuratedDataset(tmp_path / "dataset")
    series = dataset.series.set_index("series_uid")
    assert list(dataset.series.columns) == SERIES_COLUMNS
    assert series.loc["2.25.2002", "dsa_source"] == "as_is"
    assert pd.isna(series.loc["2.25.2002", ["native_low", "native_high"]]).all()
    assert series.loc["2.25.2001", "native_low"] < series.loc["2.25.2001", "native_high"]
    frames = dataset.frames
    has = frames.set_index("frame_id")["has_native"]
    assert frames["has_native"].dtype == bool
    assert (has == (frames.set_index("frame_id")["series_uid"] == "2.25.2001")).all()
    ids = frames["frame_id"].to_numpy()
    native = dataset.read(ids, kind="native")
    assert np.all(native[~has.to_numpy()] == 0) and native[has.to_numpy()].max() > 0.9


def test_non_square_native_frames_are_padded_and_resized_like_the_dsa(tmp_path: Path) -> None:
    native = np.full((4, 40, 64), 3000, dtype=np.uint16)
    native[:, :, 32:] = 3600  # the brighter right half is the window's top
    native[:, 16:24, 4:12] = 2000  # a dark patch (2.5 % of the pixels) is its bottom
    path = write_series(tmp_path / "wide.dcm", native)

    decoded = decode_series([path], 32)

    assert decoded.native.shape == decoded.frames.shape == (4, 32, 32)
    bars = np.zeros(32, dtype=bool)
    bars[:6] = bars[26:] = True  # (64 - 40) / 2 rows of 64, at 32 px
    assert np.all(decoded.native[:, bars] == 0) and np.all(decoded.frames[:, bars] == 0)
    middle = np.log(3001 / 2001) / np.log(3601 / 2001)
    left = decoded.native[:, 14:26, 8:15].astype(float) / STORED_MAX
    assert left == pytest.approx(np.full_like(left, middle), abs=1e-4)
    assert np.all(decoded.native[:, 6:26, 17:] == STORED_MAX)


# --------------------------------------------------------------------------- the phantom


def test_curated_phantom_keeps_a_native_frame_per_dsa_frame(curated) -> None:
    dataset = curated.dataset
    frames, series = dataset.frames, dataset.series
    kept = series[series["dsa_source"].notna()]

    assert dataset.has_native and frames["has_native"].all()
    assert zarr.open_array(curated.out / "native.zarr", mode="r").shape == (len(frames), 64, 64)
    assert (kept["native_low"] < kept["native_high"]).all()
    assert series[series["dsa_source"].isna()]["native_low"].isna().all()
    native = dataset.read(frames["frame_id"].to_numpy(), kind="native")
    assert native.dtype == np.float32 and native.min() >= 0.0 and native.max() <= 1.0
    # The window spans each series: about 0.5 % of the pixels inside the shutter are clipped
    # at each end, so both ends are reached but not crowded.
    assert 0.001 < np.mean(native == 1.0) < 0.02


def test_native_arterial_frames_are_darker_where_the_vessels_are(curated) -> None:
    """Against the series' first mask frame: darker where the DSA frame shows a vessel, the
    same elsewhere (up to noise and motion)."""
    dataset, truth = curated.dataset, curated.archive.truth
    frames = dataset.frames.merge(truth[["series_uid", "frame_index", "phase"]],
                                  on=["series_uid", "frame_index"])  # fmt: skip
    checked = 0
    for _, rows in frames.groupby("series_uid"):
        arterial = rows[rows["phase"] == "arterial"]["frame_id"].to_numpy()
        if arterial.size == 0:
            continue
        mask = rows[rows["is_mask"]]["frame_id"].to_numpy()[:1]
        dsa, before = dataset.read(arterial), dataset.read(mask, "native")
        change = dataset.read(arterial, "native") - before
        inside = before > 0  # black outside the shutter
        vessel, background = inside & (dsa < 0.2), inside & (dsa > 0.5)
        assert change[vessel].mean() < -0.04
        assert abs(change[background].mean()) < 0.005
        checked += 1
    assert checked >= 4


# --------------------------------------------------------------------------- resuming, old datasets


def _copy(curated, dest: Path) -> Path:
    shutil.copytree(curated.out, dest)
    return dest


def test_resume_drops_uncommitted_rows_of_both_arrays(curated, tmp_path: Path) -> None:
    out = _copy(curated, tmp_path / "dataset")
    junk = np.full((1, 64, 64), 7, dtype=np.uint16)
    zarr.open_array(out / "frames.zarr", mode="r+").append(np.concatenate([junk, junk]))
    zarr.open_array(out / "native.zarr", mode="r+").append(junk)  # cut off between the two

    run_curate(curated.dicom, out, key_file=curated.key_file)

    result, reference = CuratedDataset(out), curated.dataset
    ids = reference.frames["frame_id"].to_numpy()
    for name in ("frames.zarr", "native.zarr"):
        assert zarr.open_array(out / name, mode="r").shape[0] == len(ids)
    np.testing.assert_array_equal(result.read(ids, "native"), reference.read(ids, "native"))


def test_native_array_shorter_than_the_tables_is_a_one_line_error(curated, tmp_path) -> None:
    out = _copy(curated, tmp_path / "dataset")
    native = zarr.open_array(out / "native.zarr", mode="r+")
    native.resize((native.shape[0] - 1, 64, 64))

    with pytest.raises(DatasetError, match=r"native\.zarr") as info:
        run_curate(curated.dicom, out, key_file=curated.key_file)

    assert "\n" not in str(info.value)


@pytest.fixture
def old_dataset(curated, tmp_path: Path) -> Path:
    """The reference dataset as curated before native frames were kept."""
    out = _copy(curated, tmp_path / "old")
    shutil.rmtree(out / "native.zarr")
    frames = pd.read_parquet(out / "frames.parquet").drop(columns="has_native")
    frames.to_parquet(out / "frames.parquet", index=False)
    series = pd.read_parquet(out / "series.parquet").drop(columns=["native_low", "native_high"])
    series.to_parquet(out / "series.parquet", index=False)
    return out


def test_resuming_into_an_old_dataset_says_how_to_add_native_frames(curated, old_dataset):
    before = {p.name: p.read_bytes() for p in old_dataset.iterdir() if p.is_file()}

    with pytest.raises(DatasetError) as info:
        run_curate(curated.dicom, old_dataset, key_file=curated.key_file)

    message = str(info.value)
    assert "\n" not in message and str(old_dataset) in message
    assert "native" in message and "new dataset directory" in message
    assert {p.name: p.read_bytes() for p in old_dataset.iterdir() if p.is_file()} == before
    assert not (old_dataset / "native.zarr").exists()


def test_old_dataset_serves_dsa_frames_and_refuses_native_ones(curated, old_dataset) -> None:
    dataset = CuratedDataset(old_dataset)
    ids = dataset.frames["frame_id"].to_numpy()[:3]

    assert not dataset.has_native
    np.testing.assert_array_equal(dataset.read(ids), curated.dataset.read(ids))
    with pytest.raises(DatasetError, match="curate the archive again") as info:
        dataset.read(ids, kind="native")
    assert "\n" not in str(info.value) and str(old_dataset) in str(info.value)
    with pytest.raises(ValueError, match="kind"):
        curated.dataset.read(ids, kind="mask")
