"""Inception features: the shipped network, the clean resize, caching, and FID against
clean-fid on the same folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from angiosynth.evaluation import features
from angiosynth.evaluation.features import FeatureProtocol
from angiosynth.evaluation.metrics import fid


def write_folder(folder, n: int, size: int, seed: int, contrast: float) -> None:
    """Smooth random grayscale PNGs: blobs of one brightness on grey."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    yy, xx = np.mgrid[:size, :size] / size
    for i in range(n):
        image = np.full((size, size), 150.0)
        for _ in range(6):
            cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.02, 0.1)
            image -= contrast * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
        image += rng.normal(0, 3, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")


def test_the_network_is_the_shipped_file_with_its_checksum():
    network = features.load_inception()

    out = network(torch.zeros(1, 3, 299, 299))

    assert out.shape == (1, features.FEATURE_DIM)
    assert features.inception_path().name == "default_1.pt"


def test_clean_resize_is_pil_bicubic_on_float_and_clipped():
    image = np.zeros((8, 8), np.uint8)
    image[::2] = 255

    out = features.clean_resize(image, 20)
    reference = np.asarray(
        Image.fromarray(image.astype(np.float32), mode="F").resize((20, 20), Image.BICUBIC)
    )

    assert out.dtype == np.float32 and out.shape == (20, 20)
    np.testing.assert_array_equal(out, reference.clip(0, 255))
    assert reference.max() > 255  # bicubic overshoots: clipping matters


def test_inception_input_follows_the_protocol():
    frame = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)

    x = features.inception_input(frame, FeatureProtocol())
    direct = features.inception_input(frame, FeatureProtocol(frame_size=None))

    assert x.shape == (3, 299, 299)
    np.testing.assert_array_equal(x[0], x[2])
    assert not np.array_equal(x, direct)  # the 256 px step is part of the protocol
    np.testing.assert_array_equal(
        x[0], features.clean_resize(features.clean_resize(frame, 256), 299)
    )


def test_match_resolution_sends_real_frames_through_the_samples_size():
    frame = np.random.default_rng(1).integers(0, 256, (128, 128)).astype(np.uint8)

    via = features.inception_input(frame, FeatureProtocol(), via=32)
    off = features.inception_input(frame, FeatureProtocol(match_resolution=False), via=32)

    expected = features.clean_resize(
        features.clean_resize(features.clean_resize(frame, 32), 256), 299
    )
    np.testing.assert_array_equal(via[0], expected)
    assert not np.array_equal(via, off)


def test_protocol_is_recorded_and_keyed():
    record = FeatureProtocol().to_dict()

    assert record["frame_size"] == 256 and record["resize"] == "clean"
    assert FeatureProtocol().key() != FeatureProtocol(frame_size=None).key()


def test_cached_features_are_computed_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(2, 3)

    first, hit1 = features.cached_features(tmp_path, "k", compute)
    second, hit2 = features.cached_features(tmp_path, "k", compute)

    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first, second)


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        features.folder_images(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png"):
        features.read_gray(tmp_path / "bad.png")


@pytest.mark.slow
def test_fid_equals_clean_fid_on_the_same_folders(tmp_path):
    """clean-fid, pointed at the same TorchScript weights (no network), gives the same FID."""
    from cleanfid import fid as cleanfid

    a, b = tmp_path / "a", tmp_path / "b"
    write_folder(a, 24, 256, seed=0, contrast=60)
    write_folder(b, 24, 256, seed=1, contrast=100)
    network = features.load_inception()

    class Normalised(torch.nn.Module):
        def forward(self, x):  # clean-fid feeds 0-255 floats
            return network((x - 128) / 128)

    reference = cleanfid.compute_fid(
        str(a), str(b), mode="clean", custom_feat_extractor=Normalised(),
        device=torch.device("cpu"), num_workers=0, batch_size=8, verbose=False,
    )  # fmt: skip
    ours = fid(features.folder_features(a), features.folder_features(b))

    assert ours == pytest.approx(reference, rel=1e-3)
    assert ours > 1.0
