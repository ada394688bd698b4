"""The training runtime: step loop, checkpoints by name, batches by step, accumulation, and the
losses, discriminator and UNet factory the trainers build on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel
from torch import nn

from angiosynth.config import ClassifierTrainConfig, LDMConfig, TrainLoopConfig, load_config
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.models.gan import PatchDiscriminator
from angiosynth.models.unet import build_unet
from angiosynth.training.batches import shuffled_positions
from angiosynth.training.checkpoint import Checkpointer, ResumeError, load_module
from angiosynth.training.classifier import ClassifierFit
from angiosynth.training.loop import EpochEnd, TrainLoop, make_accelerator
from angiosynth.training.losses import (
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_divergence,
    resolve_perceptual,
)
from angiosynth.training.vae import _image_sets, _VAEFit, train_vae
from conftest import micro_ldm_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# --- the loop ------------------------------------------------------------------------------


def test_loop_logs_window_means_and_runs_the_epoch_hook(tmp_path):
    accelerator = make_accelerator("no")
    epochs = []

    def end_of_epoch(epoch, means):
        epochs.append((epoch, means["loss"]))
        return EpochEnd({"epoch": epoch, "val": 10 * epoch}, stop=epoch == 2)

    loop = TrainLoop(
        accelerator, lambda i: {"loss": float(i)}, TrainLoopConfig(log_every=2, max_steps=9),
        total_steps=9, log_file=tmp_path / "log.jsonl", steps_per_epoch=3,
        end_of_epoch=end_of_epoch, learning_rate=lambda: 0.5,
    )  # fmt: skip
    reached = loop.run()

    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert reached == 6  # the hook stopped it after epoch 2
    assert epochs == [(1, 1.0), (2, 4.0)]  # means of steps 0-2 and 3-5
    steps = [r for r in log if "loss" in r]
    assert [(r["step"], r["loss"], r["lr"]) for r in steps] == [
        (2, 0.5, 0.5), (4, 2.5, 0.5), (6, 4.5, 0.5)
    ]  # fmt: skip
    assert [r for r in log if "val" in r] == [
        {"step": 3, "epoch": 1, "val": 10}, {"step": 6, "epoch": 2, "val": 20}
    ]  # fmt: skip


def test_shuffled_positions_cover_each_epoch_once():
    n, batch = 10, 4
    epoch0 = [shuffled_positions(0, s, 0, n, 3, batch, batch) for s in range(3)]
    flat = torch.tensor([p for b in epoch0 for p in b])
    assert sorted(flat[:n].tolist()) == list(range(n))  # one permutation, wrapping at its end
    assert flat[n:].tolist() == flat[:2].tolist()
    again = shuffled_positions(0, 1, 0, n, 3, batch, batch)
    assert again.tolist() == epoch0[1].tolist()
    halves = [shuffled_positions(0, 1, m, n, 3, batch, batch // 2) for m in range(2)]
    assert [*halves[0], *halves[1]] == epoch0[1].tolist()


# --- checkpoints ----------------------------------------------------------------------------


class _Container(nn.Module):
    """A diffusers child (saved with save_pretrained) beside a plain layer."""

    def __init__(self) -> None:
        super().__init__()
        self.unet = _tiny_unet()
        self.head = nn.Linear(4, 2)


def _tiny_unet() -> UNet2DConditionModel:
    config = micro_ldm_config().unet
    return build_unet(config, latent_channels=3, latent_size=8, context_width=16)


def test_checkpoint_restores_every_part_by_name(tmp_path):
    torch.manual_seed(0)
    accelerator = make_accelerator("no")
    model = _Container()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    ema = EMAModel(model.parameters(), decay=0.5)
    for _ in range(2):
        model.head(torch.ones(1, 4)).sum().backward()
        optimizer.step()
        schedule.step()
        ema.step(model.parameters())
    parts = dict(models={"net": model}, optimizers={"adamw": optimizer},
                 schedules={"lr": schedule}, emas={"net": (ema, model)})  # fmt: skip
    saved = Checkpointer(tmp_path, accelerator, keep=1, **parts).save(2, {"note": "x"})
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = [p.clone() for p in ema.shadow_params]
    noise = torch.rand(())

    torch.manual_seed(1)
    model2 = _Container()
    optimizer2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    schedule2 = torch.optim.lr_scheduler.StepLR(optimizer2, 1, gamma=0.5)
    ema2 = EMAModel(model2.parameters(), decay=0.5)
    restorer = Checkpointer(tmp_path, accelerator, models={"net": model2},
                            optimizers={"adamw": optimizer2}, schedules={"lr": schedule2},
                            emas={"net": (ema2, model2)})  # fmt: skip
    state = restorer.load(restorer.latest())

    assert state == {"step": 2, "extra": {"note": "x"}} and saved.name == "checkpoint-0000002"
    assert all(torch.equal(expected[k], v) for k, v in model2.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(averaged, ema2.shadow_params, strict=True))
    assert ema2.optimization_step == ema.optimization_step == 2
    assert schedule2.get_last_lr() == schedule.get_last_lr() == [0.025]
    states = optimizer2.state_dict()["state"]  # the head's two tensors
    assert len(states) == 2 and all(s["step"].item() == 2 for s in states.values())
    assert torch.equal(torch.rand(()), noise)  # the RNG continues where the checkpoint was
    # the EMA is stored as a model: its UNet loads with diffusers by name
    unet = UNet2DConditionModel.from_pretrained(saved / "ema" / "net" / "unet")
    names = [n for n, _ in model.named_parameters()]
    ema_by_name = dict(zip(names, averaged, strict=True))
    assert torch.equal(unet.conv_in.weight, ema_by_name["unet.conv_in.weight"])


def test_checkpointer_keeps_the_last_k(tmp_path):
    accelerator = make_accelerator("no")
    checkpointer = Checkpointer(tmp_path, accelerator, models={"m": nn.Linear(2, 2)}, keep=2)
    for step in (1, 2, 3):
        checkpointer.save(step)
    assert [p.name for p in checkpointer.checkpoints()] == [
        "checkpoint-0000002", "checkpoint-0000003"
    ]  # fmt: skip
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_checkpoint_that_does_not_fit_is_a_one_line_error(tmp_path):
    accelerator = make_accelerator("no")
    Checkpointer(tmp_path, accelerator, models={"m": nn.Linear(2, 2)}).save(1)
    other = Checkpointer(tmp_path, accelerator, models={"m": nn.Linear(3, 2)})
    with pytest.raises(ResumeError, match="checkpoint-0000001: cannot be restored"):
        other.load(other.latest())
    with pytest.raises(ResumeError, match="no checkpoint"):
        Checkpointer(tmp_path / "none", accelerator).latest()


def test_load_module_is_strict_about_names(tmp_path):
    from angiosynth.training.checkpoint import save_module

    save_module(nn.Linear(2, 2), tmp_path)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_module(nn.Sequential(nn.Linear(2, 2)), tmp_path)


# --- autoencoder: accumulation and resume -------------------------------------------------


def _first_step_gradients(dataset: Path, accumulation: int, tmp_path: Path) -> dict:
    """Gradients of the autoencoder after step 0 of a batch of 8 in `accumulation` parts."""
    config = micro_ldm_config()
    config = config.model_copy(update={"train_vae": config.train_vae.model_copy(
        update={"gradient_accumulation": accumulation})})  # fmt: skip
    accelerator = make_accelerator("no", accumulation)
    set_seed(0)
    train_set, val_set = _image_sets(CuratedDataset(dataset), config)
    fit = _VAEFit(accelerator, config, train_set, val_set, None, tmp_path)
    fit.optimizer.optimizer.step = lambda *args, **kwargs: None
    fit.optimizer.zero_grad = lambda *args, **kwargs: None
    fit.step(0)
    return {n: p.grad.clone() for n, p in fit.vae.named_parameters()}


def test_two_micro_batches_give_the_gradient_of_one_batch_twice_their_size(
    diffusion_data, tmp_path
):
    whole = _first_step_gradients(diffusion_data.dataset, 1, tmp_path)
    halves = _first_step_gradients(diffusion_data.dataset, 2, tmp_path)
    assert whole.keys() == halves.keys()
    for name in whole:
        torch.testing.assert_close(halves[name], whole[name], rtol=1e-4, atol=1e-7)


def test_vae_resumes_exactly(diffusion_data, tmp_path):
    """4 steps in one go (the fixture's run) equal 2 steps, an interruption and 2 more."""
    config = micro_ldm_config()
    config = config.model_copy(update={"train_vae": config.train_vae.model_copy(
        update={"checkpoint_every": 2})})  # fmt: skip
    run = tmp_path / "vae"
    assert train_vae(diffusion_data.dataset, config, run, stop_after=3) is None
    result = train_vae(diffusion_data.dataset, config, run, resume=True)

    from safetensors.torch import load_file

    name = "vae/diffusion_pytorch_model.safetensors"
    straight = load_file(diffusion_data.vae_run / name)
    resumed = load_file(run / name)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    reference = json.loads((diffusion_data.vae_run / "metrics.json").read_text())
    assert result.steps == 4 and result.best_val_loss == reference["best_val_loss"]


# --- losses, discriminator, UNet factory ----------------------------------------------------


def test_kl_divergence_known_values():
    zero = torch.zeros(2, 3, 4, 4)
    assert kl_divergence(zero, zero).tolist() == [0.0, 0.0]
    # KL(N(1, 1) || N(0, 1)) = 1/2 per element; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2
    assert kl_divergence(zero + 1, zero).tolist() == [24.0, 24.0]
    value = kl_divergence(zero, zero + 1)[0].item()
    assert value == pytest.approx(48 * (torch.e - 2) / 2)


def test_hinge_losses_known_values():
    assert hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)).item() == 0
    assert hinge_discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == 1.0
    assert hinge_discriminator_loss(torch.tensor([0.5]), torch.tensor([0.0])).item() == 0.75
    assert hinge_generator_loss(torch.tensor([1.0, 3.0])).item() == -2.0


def test_perceptual_loss_never_downloads(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert resolve_perceptual("auto", "vgg") == "stlpips"
    with pytest.raises(FileNotFoundError, match="never downloads"):
        resolve_perceptual("lpips", "vgg")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "vgg16-397923af.pth").touch()
    assert resolve_perceptual("auto", "vgg") == "lpips"


def test_patch_discriminator_shape_and_receptive_field():
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8).eval()
    assert disc(torch.zeros(2, 1, 64, 64)).shape == (2, 1, 6, 6)
    # pix2pix's 70 x 70 PatchGAN: an output sees 70 input pixels per side
    image = torch.zeros(1, 1, 128, 128, requires_grad=True)
    disc(image)[0, 0, 6, 6].backward()
    rows = image.grad[0, 0].abs().sum(1).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70


def test_build_unet_follows_the_config_and_the_prompt():
    config = load_config(CONFIGS / "tiny.yaml", LDMConfig)
    torch.manual_seed(0)
    unet = build_unet(config.unet, 3, config.latent_size, config.text_encoder.width).eval()
    assert unet.config.block_out_channels == (32, 64, 64)
    assert unet.config.attention_head_dim == (2, 2, 2)  # heads per level, passed through
    assert unet.config.cross_attention_dim == 64
    latents = torch.randn(2, 3, 16, 16)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = unet(latents, t, encoder_hidden_states=torch.zeros(2, 4, 64)).sample
        b = unet(latents, t, encoder_hidden_states=torch.ones(2, 4, 64)).sample
    assert a.shape == latents.shape and not torch.allclose(a, b)


@pytest.mark.slow
def test_build_unet_of_the_paper_has_its_parameter_count():
    config = load_config(CONFIGS / "paper.yaml", LDMConfig)
    unet = build_unet(config.unet, 3, config.latent_size, config.text_encoder.width)
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == 499.6  # SPEC.md


# --- classifiers ----------------------------------------------------------------------------


class _NoisyFrames(torch.utils.data.Dataset):
    """24 frames of 8 x 8 with labels; each read adds noise from the global RNG (as the
    classifiers' augmentation does)."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(5)
        self.frames = torch.rand(24, 1, 8, 8, generator=generator)
        self.labels = (self.frames.mean((1, 2, 3)) > 0.5).float()

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int):
        return self.frames[i] + 0.1 * torch.rand(1, 8, 8), self.labels[i]


def _classifier_fit() -> ClassifierFit:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    config = ClassifierTrainConfig(batch_size=4, epochs=3, device="cpu", mixed_precision="no",
                                   checkpoint_every=5, log_every=100)  # fmt: skip
    return ClassifierFit(model, _NoisyFrames(), config, lambda m: {"bias": m[2].bias.item()})


def test_classifier_resumes_exactly_at_an_epoch_boundary(tmp_path):
    straight = _classifier_fit()
    history = straight.run(tmp_path / "straight")
    interrupted = _classifier_fit()
    interrupted.run(tmp_path / "cut", stop_after=8)  # 6 steps per epoch: cut after epoch 2
    resumed = _classifier_fit()
    resumed_history = resumed.run(tmp_path / "cut", resume=True)

    assert straight.epochs == 3 and len(history) == 3
    assert [r["holdout"] for r in resumed_history] == [r["holdout"] for r in history]
    assert [r["train_loss"] for r in resumed_history] == [r["train_loss"] for r in history]
    expected = straight.unwrapped().state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.unwrapped().state_dict().items())
    # checkpoint_every 5 and stop_after 8 are rounded up to whole epochs (6 and 12 steps)
    names = [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()]
    assert sorted(names) == ["checkpoint-0000012", "checkpoint-0000018"]
