"""Decoding a series into DSA frames: log / linear subtraction, fallbacks, windowing, resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from angiosynth.curation.dataset import CuratedDataset
from angiosynth.curation.frames import STORED_MAX, decode_series
from angiosynth.dicom.subtraction import DISPLAY_BACKGROUND

from .helpers import edit_dicom, run_curate, write_log_series, write_series

BACKGROUND = round(DISPLAY_BACKGROUND * STORED_MAX)  # 39321
N, SIDE = 6, 48
SHUTTER = (3, 46, 3, 46)  # left, right, upper, lower (1-based, inclusive)
MU_THIN, MU_THICK = 0.2, 0.5


def _inside(shape: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    left, right, upper, lower = SHUTTER
    inside = np.zeros(shape, dtype=bool)
    inside[upper - 1 : lower, left - 1 : right] = True
    return inside


def _attenuation() -> np.ndarray:
    """(N, SIDE, SIDE) contrast attenuation: none in the two mask frames, two vessels after."""
    mu = np.zeros((N, SIDE, SIDE))
    mu[2:, 10:14, 4:44] = MU_THIN
    mu[2:, 20:40, 30:34] = MU_THICK
    return mu


def _native_lin() -> np.ndarray:
    """I0 exp(-mu) with an exposure I0 that varies across the field (2000 .. 4000)."""
    i0 = np.linspace(2000.0, 4000.0, SIDE)[None, None, :]
    return np.rint(i0 * np.exp(-_attenuation())).astype(np.uint16)


def _expected_display(dsa: np.ndarray) -> np.ndarray:
    """The documented windowing, written out: 99.5th percentile inside the shutter -> black."""
    inside = _inside(dsa.shape[-2:])
    scale = max(np.percentile(dsa[:, inside], 99.5), 1e-3)
    image = np.clip(DISPLAY_BACKGROUND * (1.0 - dsa / scale), 0.0, 1.0)
    return np.rint(np.where(inside, image, 0.0) * STORED_MAX)


def test_lin_series_is_log_subtracted_with_its_mask_frames(tmp_path: Path) -> None:
    native = _native_lin()
    path = write_series(tmp_path / "lin.dcm", native, shutter_edges=SHUTTER)

    decoded = decode_series([path], SIDE)

    assert decoded.dsa_source == "mask" and decoded.mask_frames == (1, 2)
    frames = decoded.frames
    assert frames.shape == (N, SIDE, SIDE) and frames.dtype == np.uint16
    x = native.astype(np.float64)
    dsa = np.log(x[:2].mean(axis=0) + 1.0) - np.log(x + 1.0)
    np.testing.assert_allclose(frames, _expected_display(dsa), atol=2)

    inside, mu = _inside(), _attenuation()
    assert np.all(frames[:, ~inside] == 0)  # black outside the shutter
    assert np.all(frames[:2][:, inside] == BACKGROUND)  # mask frames are flat
    background = inside[None] & (mu == 0)
    assert np.all(frames[background] == BACKGROUND)  # whatever the exposure I0
    # Vessels are darker in proportion to their attenuation, independent of I0.
    darkening = 1.0 - frames[2:].astype(float) / BACKGROUND
    thin, thick = darkening[mu[2:] == MU_THIN], darkening[mu[2:] == MU_THICK]
    assert thick.mean() == pytest.approx(1.0, abs=0.01)  # the strongest contrast maps to black
    assert thin.mean() == pytest.approx(MU_THIN / MU_THICK, abs=0.01)
    assert thin.std() < 0.01  # not a linear subtraction, which would follow I0


@pytest.mark.parametrize(("sign", "base", "thin", "thick"), [(1, 3000, 2500, 2000),
                                                             (-1, 1000, 1500, 2000)])  # fmt: skip
def test_log_series_is_subtracted_linearly(
    tmp_path: Path, sign: int, base: int, thin: int, thick: int
) -> None:
    stored = np.full((N, SIDE, SIDE), base, dtype=np.uint16)
    stored[2:, 10:14, 4:44] = thin
    stored[2:, 20:40, 30:34] = thick
    path = write_log_series(tmp_path / "log.dcm", stored, sign, shutter_edges=SHUTTER)

    decoded = decode_series([path], SIDE)

    assert decoded.dsa_source == "mask"
    frames = decoded.frames.astype(float)
    # Linear: the thin vessel has half the thick one's difference, so half its darkening
    # (a log subtraction would give log(3001/2501) / log(3001/2001) = 0.45).
    assert frames[2, 12, 20] == pytest.approx(0.5 * BACKGROUND, abs=2)
    assert frames[2, 30, 31] == pytest.approx(0.0, abs=2)
    assert np.all(frames[:2][:, _inside()] == BACKGROUND)


def _contrast_after_first_frame() -> np.ndarray:
    frames = np.full((4, SIDE, SIDE), 3000, dtype=np.uint16)
    frames[1:, 20:28, 5:40] = 1500
    return frames


@pytest.mark.parametrize("mask_numbers", [None, [9]])
def test_series_without_usable_mask_uses_the_first_frame(
    tmp_path: Path, mask_numbers: list[int] | None
) -> None:
    path = write_series(tmp_path / "nomask.dcm", _contrast_after_first_frame(), mask_frames=(1,))

    def change_mask(ds) -> None:
        if mask_numbers is None:
            del ds.MaskSubtractionSequence
            del ds.RecommendedViewingMode
        else:
            ds.MaskSubtractionSequence[0].MaskFrameNumbers = mask_numbers

    edit_dicom(path, change_mask)

    decoded = decode_series([path], SIDE)

    assert decoded.dsa_source == "first_frame" and decoded.mask_frames == (1,)
    assert np.all(decoded.frames[0] == BACKGROUND)
    assert np.all(decoded.frames[1:, 20:28, 5:40] == 0)
    assert np.all(decoded.frames[1:, 30:, :] == BACKGROUND)


def test_first_frame_fallback_is_recorded_by_curate(tmp_path: Path) -> None:
    dicom = tmp_path / "archive" / "dicom"
    path = write_series(dicom / "nomask.dcm", _contrast_after_first_frame(), mask_frames=(1,))
    edit_dicom(path, lambda ds: delattr(ds, "MaskSubtractionSequence"))

    run_curate(dicom, tmp_path / "dataset")

    series = pd.read_parquet(tmp_path / "dataset" / "series.parquet")
    frames = pd.read_parquet(tmp_path / "dataset" / "frames.parquet")
    assert list(series["dsa_source"]) == ["first_frame"]
    assert list(frames["is_mask"]) == [True, False, False, False]


@pytest.mark.parametrize("monochrome1", [False, True])
def test_already_subtracted_series_is_windowed_as_is(tmp_path: Path, monochrome1: bool) -> None:
    rng = np.random.default_rng(3)
    stored = rng.integers(1000, 3000, size=(N, SIDE, SIDE)).astype(np.uint16)
    stored[:, 20:30, 10:40] = 200  # a vessel already dark in the stored DSA, in every frame
    path = write_series(tmp_path / "sub.dcm", stored, shutter_edges=SHUTTER)

    def subtracted(ds) -> None:
        ds.ImageType = ["DERIVED", "PRIMARY", "SINGLE PLANE", "SUBTRACTED"]
        if monochrome1:
            ds.PhotometricInterpretation = "MONOCHROME1"

    edit_dicom(path, subtracted)

    decoded = decode_series([path], SIDE)

    assert decoded.dsa_source == "as_is" and decoded.mask_frames == ()
    inside = _inside()
    values = stored.astype(np.float64)
    lo, hi = np.percentile(values[:, inside], [0.5, 99.5])
    image = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    image = 1.0 - image if monochrome1 else image
    expected = np.rint(np.where(inside, image, 0.0) * STORED_MAX)
    np.testing.assert_allclose(decoded.frames, expected, atol=2)
    # Nothing was subtracted: the first frames carry the same vessel as the others.
    vessel = decoded.frames[0, 22, 20]
    assert vessel == (STORED_MAX if monochrome1 else 0)
    assert np.all(decoded.frames[:, 22, 20] == vessel)


@pytest.mark.parametrize(("shape", "size"), [((40, 64), 32), ((64, 40), 32), ((40, 64), 96)])
def test_non_square_frames_are_padded_and_resized(
    tmp_path: Path, shape: tuple[int, int], size: int
) -> None:
    rows, cols = shape
    native = np.full((4, rows, cols), 3000, dtype=np.uint16)
    native[2:, rows // 2 - 2 : rows // 2 + 2, :] = 1500  # a vessel across the middle
    path = write_series(tmp_path / "wide.dcm", native)

    decoded = decode_series([path], size)

    frames = decoded.frames
    assert frames.shape == (4, size, size) and frames.dtype == np.uint16
    wide = cols > rows
    bar = round((max(shape) - min(shape)) / 2 * size / max(shape))  # black bar width
    margin = 2 if size > max(shape) else 0  # bilinear upsampling blends across the edge
    image = frames if wide else frames.transpose(0, 2, 1)
    assert np.all(image[:, : bar - margin, :] == 0)
    assert np.all(image[:, size - bar + margin :, :] == 0)
    assert np.all(image[:2, bar + margin : size - bar - margin, :] == BACKGROUND)
    if wide:  # the vessel stays in the middle, at full contrast
        assert np.all(image[2:, size // 2 - 1 : size // 2 + 1, :] == 0)


def test_series_in_several_files_is_read_in_instance_order(tmp_path: Path) -> None:
    native = _native_lin()
    single = tmp_path / "one" / "dicom"
    write_series(single / "all.dcm", native, shutter_edges=SHUTTER)
    split = tmp_path / "two" / "dicom"
    for number, (name, part) in enumerate([("b.dcm", native[:3]), ("a.dcm", native[3:])], 1):
        path = write_series(split / name, part, shutter_edges=SHUTTER, mask_frames=(1,),
                            sop_instance_uid=f"2.25.30{number}")  # fmt: skip
        edit_dicom(path, lambda ds, n=number: setattr(ds, "InstanceNumber", n))
    edit_dicom(split / "b.dcm", lambda ds: setattr(ds.MaskSubtractionSequence[0],
                                                    "MaskFrameNumbers", [1, 2]))  # fmt: skip

    run_curate(single, tmp_path / "one" / "dataset")
    run_curate(split, tmp_path / "two" / "dataset")

    one = CuratedDataset(tmp_path / "one" / "dataset")
    two = CuratedDataset(tmp_path / "two" / "dataset")
    assert list(two.series["n_files"]) == [2] and list(two.series["n_frames"]) == [N]
    np.testing.assert_array_equal(two.read(np.arange(N)), one.read(np.arange(N)))
    assert list(two.frames["is_mask"]) == [True, True, False, False, False, False]
