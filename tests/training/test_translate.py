"""The translation trainer: a few steps of each method, exact resume, the collapse warning,
the run directory."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from angiosynth.config import SegmenterConfig, TranslateConfig, load_config
from angiosynth.errors import OptionError
from angiosynth.gan.segmenter import save_segmenter
from angiosynth.gan.translator import load_translator, translate_batch
from angiosynth.models.segmenter import VesselUNet
from angiosynth.training.translate import train_translation


class ArraySource:
    """An in-memory image source (the `data.translation.ImageSource` protocol)."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames
        self.names = [f"frame-{i}" for i in range(len(frames))]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames.shape[1:]

    def read(self, positions) -> np.ndarray:
        return self.frames[np.asarray(positions)]


@dataclass
class Domains:
    x_train: ArraySource
    y_train: ArraySource
    y_test: ArraySource | None = None
    description: str = "arrays"


def _domains(side: int = 48) -> Domains:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.45, 0.55, (5, side, side)).astype(np.float32)
    y = x.copy()
    y[:, side // 2 - 2 : side // 2 + 2] = 0.1  # a dark "vessel" across every angiogram
    return Domains(ArraySource(x), ArraySource(y))


def _config(**train) -> TranslateConfig:
    return TranslateConfig.model_validate({
        "data": {"crop_size": 32},
        "generator": {"ngf": 4, "n_blocks": 1, "n_content": 2},
        "discriminator": {"ndf": 4, "n_layers": 2},
        "cut": {"nce_layers": [0, 4, 7, 10], "num_patches": 16},
        "train": {"max_steps": 6, "log_every": 2, "batch_size": 2, **train},
    })  # fmt: skip


@pytest.mark.parametrize("method", ["cyclegan", "attentiongan", "cut"])
def test_each_method_trains_and_writes_its_run(method, tmp_path):
    out = tmp_path / method
    result = train_translation(_domains(), method, _config(), out)
    assert result.steps == 6 and result.warnings == []
    expected = {"cyclegan": {"cycle_x", "identity_y", "d_x", "d_y"}, "cut": {"nce_x", "nce_y"}}
    assert expected.get(method, {"cycle_y", "d_x"}) <= set(result.last_losses)
    assert all(np.isfinite(v) for v in result.last_losses.values())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == method and config["source"] == "arrays"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]
    assert (out / "samples" / "step-0000006.png").stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["seconds_per_step"] > 0
    network, settings = load_translator(out)
    assert settings["method"] == method
    frame = _domains(40).x_train.frames[:1]
    assert translate_batch(network, frame).shape == (1, 40, 40)


def test_learning_rate_is_constant_then_decays_linearly(tmp_path):
    train_translation(_domains(), "cut", _config(max_steps=8, log_every=1), tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in log]
    # 8 steps, the last half decaying: factor 1 - max(0, step - 4) / 5 after each step
    np.testing.assert_allclose(lrs, [2e-4 * (1 - max(0, s - 4) / 5) for s in range(1, 9)])


@pytest.mark.parametrize("method", ["cyclegan", "cut"])
def test_resume_continues_exactly(method, tmp_path):
    config = _config(checkpoint_every=3)
    full = train_translation(_domains(), method, config, tmp_path / "full")
    cut_short = train_translation(_domains(), method, config, tmp_path / "part", stop_after=3)
    assert cut_short is None
    resumed = train_translation(_domains(), method, config, tmp_path / "part", resume=True)
    assert resumed.last_losses == full.last_losses
    a = load_file(tmp_path / "full" / "generator" / "model.safetensors")
    b = load_file(tmp_path / "part" / "generator" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_same_seed_same_generator(tmp_path):
    for name in ("a", "b"):
        train_translation(_domains(), "cyclegan", _config(), tmp_path / name)
    a = load_file(tmp_path / "a" / "generator" / "model.safetensors")
    b = load_file(tmp_path / "b" / "generator" / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)


def test_collapse_is_warned_about(tmp_path):
    records = []
    config = _config(collapse_threshold=100.0, collapse_steps=4)  # every loss counts as low
    result = train_translation(_domains(), "cut", config, tmp_path / "run", on_log=records.append)
    assert len(result.warnings) == 1 and "step 4" in result.warnings[0]
    assert any("warning" in r and r["step"] == 4 for r in records)


def test_crops_larger_than_the_frames_are_refused(tmp_path):
    config = _config().model_copy(
        update={"data": _config().data.model_copy(update={"crop_size": 64})}
    )
    with pytest.raises(OptionError, match="crop_size 64 exceeds the x frames"):
        train_translation(_domains(48), "cyclegan", config, tmp_path / "run")


def test_the_paper_config_holds_the_published_settings():
    paper = load_config("configs/translate-paper.yaml", TranslateConfig)
    run_control = {"checkpoint_every", "log_every", "sample_every"}
    assert paper.model_dump(exclude={"train": run_control}) == TranslateConfig().model_dump(
        exclude={"train": run_control}
    )
    assert paper.train.epochs_for("cyclegan") == 200 and paper.train.epochs_for("cut") == 400
    tiny = load_config("configs/translate-tiny.yaml", TranslateConfig)
    assert tiny.data.crop_size == 64 and tiny.train.max_steps is not None


def test_bf16_autocast_trains(tmp_path):
    """train.mixed_precision bf16 (CPU autocast here, the GPU path on GPUs) runs every step."""
    result = train_translation(_domains(), "cyclegan", _config(mixed_precision="bf16"),
                               tmp_path / "run")  # fmt: skip
    assert result.steps == 6 and all(np.isfinite(v) for v in result.last_losses.values())
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["train"]["mixed_precision"] == "bf16"


def _segmenter_run(tmp_path):
    """A (random-weight) saved segmenter: the VSGL plumbing does not need a trained one."""
    torch.manual_seed(3)
    save_segmenter(VesselUNet((4, 8), groups=2), SegmenterConfig(), tmp_path / "seg" / "segmenter")
    return tmp_path / "seg"


def _casgan_config(**train) -> TranslateConfig:
    config = _config(**train)
    casgan = config.casgan.model_copy(update={"encoder_blocks": 1, "predictor_blocks": 1})
    return config.model_copy(update={"casgan": casgan})


def test_casgan_trains_with_its_segmenter_and_resumes_exactly(tmp_path):
    segmenter = _segmenter_run(tmp_path)
    config = _casgan_config(checkpoint_every=3)
    full = train_translation(_domains(), "casgan", config, tmp_path / "full", segmenter=segmenter)
    assert {"gan_sem", "pred", "latent", "d_sem", "d_x", "d_y"} <= set(full.last_losses)
    recorded = yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())
    assert recorded["segmenter"] == str(segmenter.resolve()) and recorded["casgan"]["vsgl"]
    assert train_translation(_domains(), "casgan", config, tmp_path / "part", stop_after=3,
                             segmenter=segmenter) is None  # fmt: skip
    resumed = train_translation(_domains(), "casgan", config, tmp_path / "part", resume=True,
                                segmenter=segmenter)  # fmt: skip
    assert resumed.last_losses == full.last_losses
    a = load_file(tmp_path / "full" / "generator" / "model.safetensors")
    b = load_file(tmp_path / "part" / "generator" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    _, settings = load_translator(tmp_path / "full")
    assert settings["method"] == "casgan" and settings["architecture"] == "casgan"
    sheet = tmp_path / "full" / "samples" / "step-0000006.png"
    assert sheet.stat().st_size > 1000  # with the attention row


def test_casgan_segmenter_options_are_checked(tmp_path):
    segmenter = _segmenter_run(tmp_path)
    with pytest.raises(OptionError, match="--segmenter RUN"):
        train_translation(_domains(), "casgan", _casgan_config(), tmp_path / "a")
    with pytest.raises(OptionError, match="used by casgan only"):
        train_translation(_domains(), "cyclegan", _config(), tmp_path / "b", segmenter=segmenter)
    save_segmenter(VesselUNet((4, 8, 8, 8, 8, 8, 8), groups=2), SegmenterConfig(),
                   tmp_path / "deep" / "segmenter")  # fmt: skip
    with pytest.raises(OptionError, match="divisible by 64"):
        train_translation(_domains(), "casgan", _casgan_config(), tmp_path / "c",
                          segmenter=tmp_path / "deep")  # fmt: skip
    off = _casgan_config()
    off = off.model_copy(update={"casgan": off.casgan.model_copy(update={"vsgl": False})})
    result = train_translation(_domains(), "casgan", off, tmp_path / "d", segmenter=segmenter)
    assert "gan_sem" not in result.last_losses  # VSGL off: the segmenter is not used
