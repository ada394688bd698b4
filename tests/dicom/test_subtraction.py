"""Log subtraction of native frames and DSA display windowing."""

from __future__ import annotations

import numpy as np
import pytest

from angiosynth.dicom.subtraction import (
    DISPLAY_BACKGROUND,
    dsa_display,
    log_exposure,
    log_subtract,
    native_display,
    native_window,
)


def test_log_subtract_recovers_the_attenuation() -> None:
    rng = np.random.default_rng(0)
    i0 = rng.uniform(2000, 4000, size=(32, 32))  # unattenuated exposure, varies over the field
    mu = np.zeros((6, 32, 32))
    mu[2:, 10:20, 5:25] = np.linspace(0.1, 1.5, 4)[:, None, None]  # contrast in frames 3..6
    frames = i0 * np.exp(-mu)

    dsa = log_subtract(frames, (1, 2))

    assert dsa.shape == frames.shape and dsa.dtype == np.float32
    # log((I0 + 1) / (I0 exp(-mu) + 1)) differs from mu by < 1e-3 at these exposures.
    np.testing.assert_allclose(dsa, mu, atol=2e-3)
    assert np.abs(dsa[:2]).max() < 1e-5


def test_log_subtract_averages_the_mask_frames() -> None:
    frames = np.stack([np.full((4, 4), 1000.0), np.full((4, 4), 3000.0), np.full((4, 4), 2000.0)])

    dsa = log_subtract(frames, (1, 2))

    np.testing.assert_allclose(dsa[2], np.log(2001.0) - np.log(2001.0), atol=1e-6)
    np.testing.assert_allclose(dsa[0], np.log(2001.0) - np.log(1001.0), rtol=1e-5)
    np.testing.assert_allclose(log_subtract(frames, (3,))[0], np.log(2001 / 1001), rtol=1e-5)


def test_log_subtract_handles_zero_pixels() -> None:
    frames = np.stack([np.full((2, 2), 100, dtype=np.uint16), np.zeros((2, 2), dtype=np.uint16)])

    dsa = log_subtract(frames, (1,))

    assert np.all(np.isfinite(dsa))
    np.testing.assert_allclose(dsa[1], np.log(101.0), rtol=1e-6)


@pytest.mark.parametrize("mask_frames", [(), (0,), (-1,), (5,), (1, 5), (0, 1)])
def test_invalid_mask_frames_raise(mask_frames: tuple[int, ...]) -> None:
    frames = np.ones((4, 8, 8))

    with pytest.raises(ValueError, match="mask"):
        log_subtract(frames, mask_frames)


def test_dsa_display_windows_vessels_on_grey() -> None:
    dsa = np.zeros((40, 40), dtype=np.float32)
    dsa[10:30, 18:22] = 0.5  # a vessel
    dsa[5, 5] = -0.3  # noise brighter than background
    shutter = (3, 38, 2, 37)  # left, right, upper, lower (1-based, inclusive)

    image = dsa_display(dsa, shutter)

    assert image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image[20, 10] == pytest.approx(DISPLAY_BACKGROUND) == pytest.approx(0.6)
    assert image[20, 20] < 0.1  # vessels dark
    assert image[5, 5] > DISPLAY_BACKGROUND
    outside = np.ones((40, 40), dtype=bool)
    outside[1:37, 2:38] = False
    assert np.all(image[outside] == 0.0)
    assert np.all(image[1:37, 2:38][dsa[1:37, 2:38] == 0] == pytest.approx(0.6))


def test_dsa_display_without_shutter_or_contrast() -> None:
    flat = dsa_display(np.zeros((8, 8)))
    strong = dsa_display(np.full((8, 8), 10.0))

    np.testing.assert_allclose(flat, DISPLAY_BACKGROUND)
    assert np.all(strong == 0.0)  # clipped into [0, 1]


def test_log_exposure_of_lin_and_log_values() -> None:
    values = np.array([[[0.0, 1.0, 99.0]]])

    np.testing.assert_allclose(log_exposure(values), np.log([[[1.0, 2.0, 100.0]]]), rtol=1e-6)
    np.testing.assert_array_equal(log_exposure(values, "LOG", -1), -values)
    assert log_exposure(values).dtype == np.float32


def test_native_window_and_display_inside_the_shutter() -> None:
    log = np.tile(np.linspace(0.0, 10.0, 20), (2, 20, 1)).astype(np.float32)
    log[:, 0, :] = 100.0  # outside the shutter: ignored by the window
    shutter = (1, 20, 2, 20)

    low, high = native_window(log, shutter)
    image = native_display(log, (low, high), shutter)

    assert (low, high) == pytest.approx(tuple(np.percentile(log[:, 1:], [0.5, 99.5])))
    assert np.all(image[:, 0] == 0.0) and image.dtype == np.float32
    np.testing.assert_allclose(image[:, 1:], np.clip((log[:, 1:] - low) / (high - low), 0, 1))
    assert native_window(np.full((3, 4, 4), 2.0)) == pytest.approx((2.0, 2.0), abs=1e-5)
