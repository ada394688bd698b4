"""The segmenter on disk (save / load, one-line errors) and on whole frames of any size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from angiosynth.config import SegmenterConfig
from angiosynth.gan.segmenter import (
    SegmenterFileError,
    load_segmenter,
    save_segmenter,
    segment_frames,
)
from angiosynth.models.segmenter import VesselUNet

CONFIG = SegmenterConfig.model_validate(
    {"model": {"channels": [4, 8, 16], "groups": 2}, "data": {"crop_size": 16}}
)


def _net(seed: int = 0) -> VesselUNet:
    torch.manual_seed(seed)
    return VesselUNet(CONFIG.model.channels, CONFIG.model.groups)


def _frames(n: int = 3, h: int = 37, w: int = 50) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (n, h, w)).astype(np.float32)


def test_save_and_load_give_the_same_probabilities(tmp_path):
    net = _net()
    save_segmenter(net, CONFIG, tmp_path / "run" / "segmenter")
    settings = json.loads((tmp_path / "run" / "segmenter" / "config.json").read_text())
    assert settings["model"] == {"channels": [4, 8, 16], "groups": 2}
    assert settings["data"]["crop_size"] == 16
    for folder in (tmp_path / "run", tmp_path / "run" / "segmenter"):  # RUN or RUN/segmenter
        loaded, _ = load_segmenter(folder)
        assert not loaded.training
        np.testing.assert_array_equal(segment_frames(loaded, _frames()),
                                      segment_frames(net, _frames()))  # fmt: skip


def test_whole_frames_of_any_size_are_segmented(tmp_path):
    net = _net()
    frames = _frames(5, 37, 50)  # neither side divisible by 4
    probabilities = segment_frames(net, frames, batch=2)
    assert probabilities.shape == (5, 37, 50) and probabilities.dtype == np.float32
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    # a frame alone, or padded into a batch, gives the same probabilities
    np.testing.assert_allclose(segment_frames(net, frames[3:4]), probabilities[3:4], atol=1e-6)
    tiny = segment_frames(net, _frames(1, 3, 2))  # too small to reflect: replicated
    assert tiny.shape == (1, 3, 2)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        segment_frames(net, frames[0])


def test_a_folder_without_a_segmenter_is_one_line_naming_it(tmp_path):
    with pytest.raises(SegmenterFileError, match="no trained segmenter") as err:
        load_segmenter(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["weights", "config", "architecture", "shape"])
def test_an_unusable_segmenter_is_one_line_naming_the_folder(tmp_path, damage):
    folder = tmp_path / "segmenter"
    save_segmenter(_net(), CONFIG, folder)
    settings = json.loads((folder / "config.json").read_text())
    if damage == "weights":
        (folder / "model.safetensors").write_bytes(b"not safetensors")
    elif damage == "config":
        (folder / "config.json").write_text("{")
    elif damage == "architecture":
        (folder / "config.json").write_text(json.dumps({**settings, "architecture": "resnet"}))
    else:
        settings["model"]["channels"] = [4, 8, 32]
        (folder / "config.json").write_text(json.dumps(settings))
    with pytest.raises(SegmenterFileError, match="unusable segmenter") as err:
        load_segmenter(tmp_path)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)
