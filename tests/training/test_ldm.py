"""Autoencoder and latent diffusion training: run directories, scale factor, checkpoints,
exact resume, configuration checks, and a 2-process run under `accelerate launch`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file

from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.diffusion import ArterialImages, arterial_rows, view_weights
from angiosynth.training.batches import step_generator
from angiosynth.training.checkpoint import DIFFUSERS_WEIGHTS, ResumeError
from angiosynth.training.ldm import train_ldm
from angiosynth.training.vae import measure_scale_factor, train_vae
from conftest import DiffusionData, micro_ldm_config


def _unet_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "unet" / "diffusion_pytorch_model.safetensors")


# --- autoencoder ------------------------------------------------------------------------------


def test_vae_run_directory_holds_the_best_model_and_its_scale_factor(diffusion_data):
    run = diffusion_data.vae_run
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    config = yaml.safe_load((run / "config.yaml").read_text())

    epochs = [r for r in log if "val_loss" in r]
    assert metrics["steps"] == 4 and log[-1]["step"] == 4
    assert metrics["best_val_loss"] == min(r["val_loss"] for r in epochs)
    assert metrics["epochs"] == len(epochs) and metrics["best_epoch"] in [
        r["epoch"] for r in epochs
    ]
    assert config["train_vae"]["perceptual"] == "none"
    vae = AutoencoderKL.from_pretrained(run / "vae")
    assert vae.config.scaling_factor == pytest.approx(metrics["scale_factor"])
    dataset = CuratedDataset(diffusion_data.dataset)
    rows = arterial_rows(dataset, "train")
    images = ArterialImages(dataset, rows["frame_id"].to_numpy(), 32)
    assert measure_scale_factor(vae, images, 0, "cpu") == pytest.approx(metrics["scale_factor"])


def test_scale_factor_makes_posterior_samples_unit_variance(diffusion_data):
    vae = AutoencoderKL.from_pretrained(diffusion_data.vae_run / "vae")
    dataset = CuratedDataset(diffusion_data.dataset)
    rows = arterial_rows(dataset, "train")
    images = ArterialImages(dataset, rows["frame_id"].to_numpy(), 32)
    with torch.no_grad():
        posterior = vae.encode(images.read(np.arange(len(images)))).latent_dist
        z = posterior.sample(torch.Generator().manual_seed(1))
    assert (z * vae.config.scaling_factor).std().item() == pytest.approx(1.0, rel=0.05)


def test_vae_stops_early_without_improvement(diffusion_data, tmp_path, monkeypatch):
    from angiosynth.training import vae as vae_module

    losses = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    monkeypatch.setattr(vae_module._VAEFit, "_validate", lambda self: next(losses))
    config = micro_ldm_config()
    config = config.model_copy(update={"train_vae": config.train_vae.model_copy(
        update={"max_steps": None, "epochs": 6, "patience": 2})})  # fmt: skip
    result = train_vae(diffusion_data.dataset, config, tmp_path / "vae")

    assert result.epochs == 4 and result.best_val_loss == 0.5


def test_vae_refuses_to_replace_a_model(diffusion_data):
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_vae(diffusion_data.dataset, micro_ldm_config(), diffusion_data.vae_run)


def test_vae_with_the_shift_tolerant_perceptual_loss(diffusion_data, tmp_path):
    config = micro_ldm_config()
    config = config.model_copy(update={"train_vae": config.train_vae.model_copy(
        update={"perceptual": "stlpips", "perceptual_net": "alex", "max_steps": 1})})  # fmt: skip
    result = train_vae(diffusion_data.dataset, config, tmp_path / "vae")

    saved = yaml.safe_load((tmp_path / "vae" / "config.yaml").read_text())
    assert result.perceptual == saved["train_vae"]["perceptual"] == "stlpips"
    assert np.isfinite(result.best_val_loss)


def test_vae_with_the_patchgan_term(diffusion_data, tmp_path, monkeypatch):
    from angiosynth.training import vae as vae_module

    calls = []
    original = vae_module._VAEFit._discriminator_step

    def discriminator_step(self, real, fake):
        calls.append(self.step_count)
        original(self, real, fake)

    monkeypatch.setattr(vae_module._VAEFit, "_discriminator_step", discriminator_step)
    config = micro_ldm_config()
    config = config.model_copy(update={"train_vae": config.train_vae.model_copy(
        update={"gan_weight": 0.1, "gan_start_step": 1, "max_steps": 3})})  # fmt: skip
    result = train_vae(diffusion_data.dataset, config, tmp_path / "vae")

    assert calls == [1, 2] and np.isfinite(result.best_val_loss)


# --- latent diffusion -------------------------------------------------------------------------


def test_ldm_run_directory(diffusion_data: DiffusionData):
    run = diffusion_data.ldm_run
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint-0000003", "checkpoint-0000006"
    ]  # fmt: skip
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) for r in log)
    config = yaml.safe_load((run / "config.yaml").read_text())
    vae = AutoencoderKL.from_pretrained(run / "vae")
    assert config["scale_factor"] == vae.config.scaling_factor
    assert (run / "latents.npy").exists() and (run / "scheduler" / "scheduler_config.json").exists()
    unet = UNet2DConditionModel.from_pretrained(run / "unet")
    assert unet.config.cross_attention_dim == 16


def test_final_weights_are_the_ema_of_the_last_checkpoint(diffusion_data: DiffusionData):
    run = diffusion_data.ldm_run
    checkpoint = run / "checkpoints" / "checkpoint-0000006"
    ema = UNet2DConditionModel.from_pretrained(checkpoint / "ema" / "denoiser" / "unet")
    raw = load_file(checkpoint / "models" / "denoiser" / "unet" / DIFFUSERS_WEIGHTS)
    final = _unet_weights(run)
    assert all(torch.equal(v, final[k]) for k, v in ema.state_dict().items())
    assert not torch.equal(raw["conv_in.weight"], final["conv_in.weight"])
    text = load_file(checkpoint / "ema" / "denoiser" / "model.safetensors")
    final_text = load_file(run / "text_encoder" / "text_encoder.safetensors")
    assert all(torch.equal(text[f"text_encoder.{k}"], v) for k, v in final_text.items())


def test_old_checkpoints_fail_with_one_line(diffusion_data: DiffusionData, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(diffusion_data.ldm_run, run)
    latest = run / "checkpoints" / "checkpoint-0000006"
    (latest / "state.json").write_text(json.dumps({"step": 6, "ema_optimization_step": 6}))
    with pytest.raises(ResumeError, match=r"before named checkpoints.*--overwrite"):
        train_ldm(diffusion_data.dataset, diffusion_data.vae_run, micro_ldm_config(max_steps=8),
                  run, resume=True)  # fmt: skip


def test_resume_continues_exactly(diffusion_data: DiffusionData, tmp_path: Path):
    """6 steps in one go equal 3 steps, an interruption, and 3 more after --resume."""
    config = micro_ldm_config()
    interrupted = tmp_path / "interrupted"
    first = train_ldm(diffusion_data.dataset, diffusion_data.vae_run, config, interrupted,
                      stop_after=3)  # fmt: skip
    assert first.steps == 3 and not (interrupted / "unet").exists()
    resumed = train_ldm(diffusion_data.dataset, diffusion_data.vae_run, config, interrupted,
                        resume=True)  # fmt: skip
    assert resumed.steps == 6

    straight = _unet_weights(diffusion_data.ldm_run)
    after_resume = _unet_weights(interrupted)
    assert straight.keys() == after_resume.keys()
    assert all(torch.equal(straight[k], after_resume[k]) for k in straight)
    # the loss logged at step 6 averages steps 5 and 6 in both runs
    resumed_log = (interrupted / "log.jsonl").read_text().splitlines()
    reference_log = (diffusion_data.ldm_run / "log.jsonl").read_text().splitlines()
    assert json.loads(resumed_log[-1]) == {**json.loads(reference_log[-1]), "steps_per_s": ANY}


def test_resume_refuses_a_changed_configuration(diffusion_data: DiffusionData, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(diffusion_data.ldm_run, run)
    changed = micro_ldm_config(lr=5e-4)
    with pytest.raises(ResumeError, match="train_ldm"):
        train_ldm(diffusion_data.dataset, diffusion_data.vae_run, changed, run, resume=True)
    longer = micro_ldm_config(max_steps=8)
    result = train_ldm(diffusion_data.dataset, diffusion_data.vae_run, longer, run, resume=True)
    assert result.steps == 8


def test_ldm_refuses_to_replace_a_run_and_to_resume_nothing(diffusion_data, tmp_path):
    with pytest.raises(FileExistsError, match="--resume or --overwrite"):
        train_ldm(diffusion_data.dataset, diffusion_data.vae_run, micro_ldm_config(),
                  diffusion_data.ldm_run)  # fmt: skip
    with pytest.raises(ResumeError, match="no run to resume"):
        train_ldm(diffusion_data.dataset, diffusion_data.vae_run, micro_ldm_config(),
                  tmp_path / "empty", resume=True)  # fmt: skip


def test_ldm_needs_a_vae_with_a_scale_factor(diffusion_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no autoencoder"):
        train_ldm(diffusion_data.dataset, tmp_path, micro_ldm_config(), tmp_path / "run")


def test_uncached_latents_and_balanced_conditions_train(diffusion_data, tmp_path):
    config = micro_ldm_config(cache_latents=False, condition_balanced=True, max_steps=2)
    result = train_ldm(diffusion_data.dataset, diffusion_data.vae_run, config, tmp_path / "run",
                       unconditional=True)  # fmt: skip

    assert result.steps == 2 and np.isfinite(result.final_loss)
    assert not (tmp_path / "run" / "latents.npy").exists()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["unconditional"] and saved["train_ldm"]["condition_dropout"] == 1.0


def test_view_weights_draw_conditions_equally():
    import pandas as pd

    views = pd.Series(["AC A"] * 6 + ["PC A"] * 2 + ["Others"] * 4)
    weights = view_weights(views)
    assert weights.sum() == pytest.approx(1.0)
    per_view = pd.Series(weights).groupby(views).sum()
    assert per_view.to_dict() == pytest.approx({"AC A": 1 / 3, "PC A": 1 / 3, "Others": 1 / 3})


def test_step_generator_depends_on_every_part():
    parts = [(0, 1, 2), (0, 1, 3), (1, 1, 2), (0, 1, 2)]
    draw = [step_generator(*p).initial_seed() for p in parts]
    assert draw[0] == draw[3] and len(set(draw)) == 3


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(diffusion_data: DiffusionData, tmp_path: Path):
    """`accelerate launch --num_processes 2` on CPU trains the same command (gloo backend)."""
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(micro_ldm_config(max_steps=4).model_dump(mode="json")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "angiosynth", "train", "ldm", str(diffusion_data.dataset),
        "--vae", str(diffusion_data.vae_run), "--config", str(config),
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 4
    assert (tmp_path / "run" / "unet" / "diffusion_pytorch_model.safetensors").exists()


def test_gradient_accumulation_counts_optimiser_steps(diffusion_data, tmp_path):
    config = micro_ldm_config(gradient_accumulation=2, max_steps=2, lr_warmup_steps=2)
    result = train_ldm(diffusion_data.dataset, diffusion_data.vae_run, config, tmp_path / "run")

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert result.steps == 2 and log[-1]["step"] == 2
    assert log[-1]["lr"] == pytest.approx(1e-3)  # warm-up counted in optimiser steps


def test_batch_must_split_into_accumulation_steps():
    from angiosynth.config import LDMTrainConfig

    with pytest.raises(ValueError, match="not divisible by gradient_accumulation 3"):
        LDMTrainConfig(batch_size=8, gradient_accumulation=3)
