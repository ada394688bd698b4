"""The segmenter trainer: its run directory, exact resume, seeds, the loss, the configs, and
held-out Dice on the phantom's frames after a short training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from angiosynth.config import ConfigError, SegmenterConfig, TranslateConfig, load_config
from angiosynth.data.segmentation import SegmentationSet, dataset_segmentation
from angiosynth.data.translation import ImageSource
from angiosynth.errors import OptionError
from angiosynth.evaluation.segmentation import score_segmenter
from angiosynth.gan.segmenter import load_segmenter
from angiosynth.training.segmenter import segmentation_loss, train_segmenter


class ArrayImages(ImageSource):
    """Images held in memory (an `ImageSource`)."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames, self.bits = frames, 16
        self.names = [f"frame-{i}" for i in range(len(frames))]

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames.shape[1:]

    def read(self, positions) -> np.ndarray:
        return self.frames[np.asarray(positions)]


def _lines(n: int = 6, side: int = 32) -> SegmentationSet:
    """Grey frames with one dark horizontal and one dark vertical line each: the vessels."""
    rng = np.random.default_rng(0)
    frames = rng.uniform(0.55, 0.65, (n, side, side)).astype(np.float32)
    masks = np.zeros(frames.shape, dtype=bool)
    for k in range(n):
        row, col = rng.integers(2, side - 2, 2)
        masks[k, row : row + 2] = masks[k, :, col : col + 2] = True
    frames[masks] = 0.3
    return SegmentationSet(ArrayImages(frames), masks, None, "files", "lines")


def _config(**train) -> SegmenterConfig:
    return SegmenterConfig.model_validate({
        "model": {"channels": [4, 8], "groups": 2},
        "data": {"crop_size": 16},
        "train": {"max_steps": 4, "batch_size": 2, "lr": 1e-2, "log_every": 2, **train},
    })  # fmt: skip


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(run / "segmenter" / "model.safetensors")


def test_training_writes_its_run(tmp_path):
    out = tmp_path / "run"
    result = train_segmenter(_lines(), _config(), out)
    assert result.steps == 4 and {"loss", "bce", "dice"} == set(result.last_losses)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["source"] == "lines" and config["targets"] == "files"
    assert config["model"] == {"channels": [4, 8], "groups": 2}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(r["lr"] == 1e-2 for r in log)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["frames"] == 6 and metrics["seconds_per_step"] > 0
    net, settings = load_segmenter(out)
    assert settings["data"]["crop_size"] == 16 and net.channels == (4, 8)


def test_resume_continues_exactly(tmp_path):
    """3 steps, interrupted, then 1 resumed step give the weights and losses of 4 in one go."""
    config = _config()
    full = train_segmenter(_lines(), config, tmp_path / "full")
    assert train_segmenter(_lines(), config, tmp_path / "part", stop_after=3) is None
    assert (tmp_path / "part" / "checkpoints" / "checkpoint-0000003").is_dir()
    resumed = train_segmenter(_lines(), config, tmp_path / "part", resume=True)
    assert resumed.steps == 4 and resumed.last_losses == full.last_losses
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_the_seed_decides_the_weights(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_segmenter(_lines(), _config(seed=seed), tmp_path / name)
    a, b, c = (_weights(tmp_path / n) for n in "abc")
    assert all(a[k].equal(b[k]) for k in a)
    assert not all(a[k].equal(c[k]) for k in a)


def test_the_learning_rate_decays_over_the_last_share(tmp_path):
    train_segmenter(_lines(), _config(decay_share=0.5, log_every=1), tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["lr"] for r in log], [1e-2 * (1 - max(0, s - 2) / 3)
                                                        for s in range(1, 5)])  # fmt: skip


def test_crops_larger_than_the_frames_are_refused(tmp_path):
    config = _config().model_copy(
        update={"data": _config().data.model_copy(update={"crop_size": 64})}
    )
    with pytest.raises(OptionError, match="crop_size 64 exceeds the frames"):
        train_segmenter(_lines(), config, tmp_path / "run")


def test_the_loss_is_bce_plus_soft_dice():
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, 3] = 1
    right = torch.where(masks > 0, 30.0, -30.0)
    loss, parts = segmentation_loss(right, masks, dice_weight=1.0, pos_weight=None)
    assert float(loss) < 1e-6 and parts["dice"] < 1e-6
    loss, parts = segmentation_loss(-right, masks, dice_weight=2.0, pos_weight=None)
    assert parts["dice"] > 0.95 and float(loss) == pytest.approx(parts["bce"] + 2 * parts["dice"])
    _, weighted = segmentation_loss(torch.zeros(2, 1, 8, 8), masks, 0.0, pos_weight=3.0)
    _, plain = segmentation_loss(torch.zeros(2, 1, 8, 8), masks, 0.0, pos_weight=None)
    # log 2 on each pixel; vessel pixels (1 in 8) count 3 times
    assert weighted["bce"] == pytest.approx(plain["bce"] * (7 + 3) / 8, rel=1e-5)


def test_config_sizes_are_checked():
    with pytest.raises(ValueError, match="crop_size 36 must be divisible by 8"):
        SegmenterConfig.model_validate({"data": {"crop_size": 36}})
    with pytest.raises(ValueError, match="48 is not divisible by groups 32"):
        SegmenterConfig.model_validate({"model": {"channels": [48, 96], "groups": 32}})


def test_the_translate_configs_carry_the_segmenter(tmp_path):
    paper = load_config("configs/translate-paper.yaml", TranslateConfig)
    assert paper.segmenter == SegmenterConfig()
    assert paper.segmenter.model.channels == (64, 128, 256, 512)
    tiny = load_config("configs/translate-tiny.yaml", TranslateConfig).segmenter
    assert tiny.train.max_steps is not None and tiny.data.crop_size % tiny.model.factor == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("segmenter:\n  train:\n    dice_wieght: 1\n")
    with pytest.raises(ConfigError, match="dice_wieght"):
        load_config(bad, TranslateConfig)


def test_held_out_dice_on_phantom_frames_after_a_short_training(pairs_dataset, tmp_path):
    """300 steps of 8 crops of 32 px on the 22 native arterial frames (64 px) of the training
    patient, scored whole on the 30 of the other patient. Measured: Dice 0.374, clDice 0.375
    (seeds 1-3: Dice 0.50-0.54; a mask of all pixels scores 0.07, one of none 0)."""
    config = SegmenterConfig.model_validate({
        "model": {"channels": [8, 16, 32], "groups": 4},
        "data": {"crop_size": 32},
        "train": {"max_steps": 300, "batch_size": 8, "lr": 3e-3, "pos_weight": 3,
                  "log_every": 100},
    })  # fmt: skip
    train = dataset_segmentation(pairs_dataset.root, "train")
    held_out = dataset_segmentation(pairs_dataset.root, "test")
    train_segmenter(train, config, tmp_path / "run")
    net, _ = load_segmenter(tmp_path / "run")
    scores = score_segmenter(net, held_out)
    assert scores["frames"] == len(held_out) == 30
    assert scores["dice"] > 0.25 and scores["cl_dice"] > 0.25
    assert len(scores["per_frame"]) == 30 and scores["per_frame"][0]["frame_id"] is not None
