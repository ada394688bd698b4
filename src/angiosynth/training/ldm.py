"""Training the latent diffusion model (paper §4.4-4.5): `angiosynth train ldm`.

The frames of the training split are encoded once by the trained autoencoder (posterior mean
and standard deviation cached in RUN/latents.npy, memory-mapped so sets larger than RAM
stream; or encoded per batch with `cache_latents: false`). Each step draws z from the cached
posterior, scales it by the autoencoder's `scaling_factor`, adds DDPM noise at a uniform
timestep, and regresses the noise (epsilon-prediction MSE) with the UNet conditioned on the
prompt tokens. AdamW updates UNet and text encoder together; an EMA of their weights is kept
and is what the run finally saves. With `condition_dropout` p, a share p of prompts is replaced
by the empty prompt, for classifier-free guidance.

Determinism: batch composition, condition dropout, latent draws, noise and timesteps of step s
come from generators seeded by (seed, s, micro-batch, process), not from a running random state,
so a resumed run continues exactly where it stopped. Under `accelerate launch` each process
takes its slice of every global batch. The loop, logging and checkpoints are `training.loop`'s.

A run directory holds::

    RUN/
      config.yaml        resolved configuration (dataset, VAE, scale factor, sizes)
      vae/               copy of the autoencoder (with its scaling_factor)
      unet/              EMA UNet (diffusers save_pretrained, safetensors)
      text_encoder/      EMA text encoder + its vocabulary
      scheduler/         the DDPM schedule (scheduler_config.json)
      latents.npy, latents.json   cached posteriors of the training frames and their key
      checkpoints/checkpoint-XXXXXXX/   `training.checkpoint`: models/denoiser and
                         ema/denoiser (each a unet/ folder loadable with diffusers'
                         from_pretrained, plus the text encoder's model.safetensors), optimiser,
                         LR schedule, RNG states, state.json (step, EMA counters)
      log.jsonl, metrics.json
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from angiosynth.config import LDMConfig
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.diffusion import ArterialImages, arterial_rows, view_weights
from angiosynth.diffusion.schedulers import training_scheduler
from angiosynth.errors import InputNotFoundError, OptionError
from angiosynth.models.denoiser import Denoiser
from angiosynth.models.text_encoder import PromptTokenizer, TextEncoder, save_text_encoder
from angiosynth.models.unet import build_unet
from angiosynth.progress import Progress
from angiosynth.runfiles import (
    LOG_FILE,
    METRICS_FILE,
    MODEL_CONFIG_FILE,
    atomic_path,
    write_json_atomic,
)
from angiosynth.training.batches import shuffled_positions, step_generator
from angiosynth.training.checkpoint import CHECKPOINTS_DIR, Checkpointer, ema_weights
from angiosynth.training.loop import TrainLoop, make_accelerator
from angiosynth.training.rundir import check_out, start_run_dir
from angiosynth.training.vae import VAE_DIR

LATENTS_FILE = "latents.npy"
LATENTS_KEY_FILE = "latents.json"
UNET_DIR, TEXT_DIR, SCHEDULER_DIR = "unet", "text_encoder", "scheduler"
#: What a fresh run replaces in a run directory (besides checkpoints and log).
_OUTPUTS = (UNET_DIR, TEXT_DIR, VAE_DIR, SCHEDULER_DIR)


@dataclass(frozen=True)
class LDMTrainResult:
    """What `train_ldm` wrote and measured."""

    out: Path
    steps: int
    final_loss: float
    seconds: float


def train_ldm(
    dataset_root: Path,
    vae_run: Path,
    config: LDMConfig,
    out: Path,
    *,
    unconditional: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: Progress | None = None,
) -> LDMTrainResult:
    """Trains UNet + text encoder on cached latents of the arterial training frames.

    Args:
        dataset_root: curated dataset with arterial.parquet.
        vae_run: run directory of `train_vae` (RUN/vae with its scaling_factor).
        config: the configuration (its `train_ldm` section drives this loop).
        out: run directory.
        unconditional: every prompt is the empty prompt (the paper's unconditional model).
        resume: continue from the latest checkpoint in `out`.
        overwrite: replace a finished or started run in `out`.
        stop_after: stop (with a checkpoint) after this many steps in total, as if interrupted.
        progress: wraps the step loop (e.g. a progress bar).

    Raises:
        DatasetError, InputNotFoundError, OutputExistsError, ResumeError.
    """
    out = Path(out)
    cfg = config.train_ldm
    if unconditional:
        config = config.model_copy(
            update={"train_ldm": cfg.model_copy(update={"condition_dropout": 1.0})}
        )
        cfg = config.train_ldm
    accelerator = make_accelerator(cfg.mixed_precision, cfg.gradient_accumulation)
    vae = _load_vae(vae_run)
    dataset = CuratedDataset(dataset_root)
    rows = arterial_rows(dataset, config.data.train_split)
    resolved = _resolved_config(config, dataset.root, vae_run, vae, unconditional)
    check_out(out, resume, overwrite, resolved, "train_ldm")
    if accelerator.is_main_process:
        start_run_dir(out, resolved, fresh=not resume, outputs=_OUTPUTS)
        if not resume:
            shutil.copytree(Path(vae_run) / VAE_DIR, out / VAE_DIR)
    accelerator.wait_for_everyone()
    latents = _latent_source(accelerator, vae, dataset, rows, config, out)
    fit = _LDMFit(accelerator, config, rows, latents, vae.config.scaling_factor)
    checkpointer = fit.checkpointer(out / CHECKPOINTS_DIR)
    loop = TrainLoop(
        accelerator, fit.step, cfg, fit.total_steps, log_file=out / LOG_FILE,
        checkpointer=checkpointer, extra_state=lambda: {"scale_factor": fit.scale},
        learning_rate=lambda: fit.lr_schedule.get_last_lr()[0], progress=progress, desc="ldm",
    )  # fmt: skip
    start_step = loop.restore(checkpointer.latest())["step"] if resume else 0
    start = time.monotonic()
    step = loop.run(start_step, stop_after)
    loss = loop.last.get("loss", math.nan)
    if step >= fit.total_steps:
        fit.save_final(out)
    seconds = time.monotonic() - start
    if accelerator.is_main_process:
        write_json_atomic(out / METRICS_FILE, {
            "steps": step, "total_steps": fit.total_steps, "final_loss": loss,
            "train_frames": len(rows), "seconds": round(seconds, 1),
        })  # fmt: skip
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return LDMTrainResult(out, step, loss, seconds)


def _load_vae(vae_run: Path) -> AutoencoderKL:
    path = Path(vae_run) / VAE_DIR
    if not (path / MODEL_CONFIG_FILE).exists():
        raise InputNotFoundError(
            f"{vae_run}: no autoencoder (missing {VAE_DIR}/{MODEL_CONFIG_FILE})"
        )
    vae = AutoencoderKL.from_pretrained(path).eval().requires_grad_(False)
    if vae.config.scaling_factor == 1.0:
        raise InputNotFoundError(f"{vae_run}: the autoencoder has no measured scaling_factor")
    return vae


def _resolved_config(config, dataset_root, vae_run, vae, unconditional) -> dict:
    return {
        "dataset": str(Path(dataset_root).resolve()),
        "vae_run": str(Path(vae_run).resolve()),
        "scale_factor": float(vae.config.scaling_factor),
        "latent_channels": int(vae.config.latent_channels),
        "latent_size": config.latent_size,
        "unconditional": unconditional,
        **config.model_dump(mode="json"),
    }


# --- latents ------------------------------------------------------------------------------------


class CachedLatents:
    """Posterior mean and std of each training frame, (N, 2C, h, w) float32, memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.array = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.array)

    def posterior(self, positions: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each (n, C, h, w), of the frames at `positions`."""
        order = np.argsort(positions)
        block = np.empty((len(positions), *self.array.shape[1:]), np.float32)
        block[order] = self.array[positions[order]]
        mean, std = torch.from_numpy(block).to(device).chunk(2, dim=1)
        return mean, std


class EncodedOnTheFly:
    """Encodes frames with the autoencoder per batch (no cache)."""

    def __init__(self, vae: AutoencoderKL, images: ArterialImages) -> None:
        self.vae, self.images = vae, images

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def posterior(self, positions: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.to(device).encode(self.images.read(positions).to(device)).latent_dist
        return dist.mean, dist.std


def _latent_source(accelerator, vae, dataset, rows, config: LDMConfig, out: Path):
    images = ArterialImages(dataset, rows["frame_id"].to_numpy(), config.data.image_size)
    if not config.train_ldm.cache_latents:
        return EncodedOnTheFly(vae, images)
    key = _latents_key(dataset, rows, vae, config.data.image_size)
    if accelerator.is_main_process and not _cache_matches(out, key):
        encode_latents(vae, images, out / LATENTS_FILE, accelerator.device)
        write_json_atomic(out / LATENTS_KEY_FILE, key)
    accelerator.wait_for_everyone()
    return CachedLatents(out / LATENTS_FILE)


def _latents_key(dataset, rows: pd.DataFrame, vae: AutoencoderKL, size: int) -> dict:
    digest = hashlib.sha256(rows["frame_id"].to_numpy().tobytes())
    digest.update(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for p in sorted(vae.parameters(), key=lambda p: p.numel())[-3:]:
        digest.update(p.detach().float().cpu().numpy().tobytes())
    return {"dataset": str(dataset.root.resolve()), "frames": len(rows), "image_size": size,
            "sha256": digest.hexdigest()}  # fmt: skip


def _cache_matches(out: Path, key: dict) -> bool:
    path = out / LATENTS_KEY_FILE
    return path.exists() and (out / LATENTS_FILE).exists() and json.loads(path.read_text()) == key


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, images: ArterialImages, path: Path, device, batch_size: int = 32
) -> None:
    """Writes the posteriors of all `images` to `path` as (N, 2C, h, w) float32 (atomically)."""
    vae = vae.to(device)
    first = vae.encode(images.read(np.arange(min(1, len(images)))).to(device)).latent_dist
    shape = (len(images), 2 * first.mean.shape[1], *first.mean.shape[2:])
    with atomic_path(path, suffix=".npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for i in range(0, len(images), batch_size):
            positions = np.arange(i, min(i + batch_size, len(images)))
            dist = vae.encode(images.read(positions).to(device)).latent_dist
            array[positions] = torch.cat([dist.mean, dist.std], dim=1).float().cpu().numpy()
        array.flush()
        del array


# --- the step -----------------------------------------------------------------------------------


class _LDMFit:
    """Model, optimiser, EMA and the step function of one training run."""

    def __init__(self, accelerator, config: LDMConfig, rows, latents, scale: float) -> None:
        cfg = self.cfg = config.train_ldm
        self.accelerator, self.config = accelerator, config
        self.latents, self.scale = latents, scale
        if cfg.micro_batch_size < accelerator.num_processes:
            raise OptionError(
                f"train_ldm.batch_size {cfg.batch_size} leaves no images for some of the "
                f"{accelerator.num_processes} processes"
            )
        self.prompts = rows["prompt"].tolist()
        self.weights = view_weights(rows["view"]) if cfg.condition_balanced else None
        self.steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
        self.total_steps = cfg.total_steps(self.steps_per_epoch)
        self.scheduler = training_scheduler(config.diffusion)
        self.tokenizer = PromptTokenizer.from_template(config.text_encoder.max_length)
        torch.manual_seed(cfg.seed)
        denoiser = build_denoiser(config, self.tokenizer, latent_channels(latents))
        if cfg.gradient_checkpointing:
            denoiser.unet.enable_gradient_checkpointing()
        self.ema = EMAModel(denoiser.parameters(), decay=cfg.ema_decay,
                            use_ema_warmup=cfg.ema_warmup, power=3 / 4)  # fmt: skip
        # CompVis' scaling: processes x batch per process x accumulation = images per step
        lr = cfg.lr * cfg.batch_size if cfg.scale_lr else cfg.lr
        optimizer = torch.optim.AdamW(denoiser.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        schedule = get_scheduler("constant_with_warmup", optimizer,
                                 num_warmup_steps=cfg.lr_warmup_steps)  # fmt: skip
        self.model, self.optimizer, self.lr_schedule = accelerator.prepare(
            denoiser, optimizer, schedule
        )
        self.ema.to(accelerator.device)

    def checkpointer(self, root: Path) -> Checkpointer:
        """Checkpoints of the denoiser, its EMA, the optimiser and the LR schedule, by name."""
        return Checkpointer(
            root, self.accelerator, models={"denoiser": self.model},
            optimizers={"adamw": self.optimizer}, schedules={"lr": self.lr_schedule},
            emas={"denoiser": (self.ema, self.model)}, keep=self.cfg.keep_checkpoints,
        )  # fmt: skip

    def step(self, step: int) -> dict:
        """One optimiser step over `gradient_accumulation` micro-batches; {"loss": mean}."""
        accumulation = self.cfg.gradient_accumulation
        total = 0.0
        for micro in range(accumulation):
            with self.accelerator.accumulate(self.model):
                loss = self._loss(step, micro)
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    self.accelerator.clip_grad_norm_(
                        self.model.parameters(), self.cfg.max_grad_norm
                    )
                self.optimizer.step()
                if self.accelerator.sync_gradients:
                    self.lr_schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach().item() / accumulation
        self.ema.step(self.model.parameters())
        return {"loss": total}

    def _loss(self, step: int, micro: int) -> torch.Tensor:
        """Epsilon-prediction MSE of this process's slice of micro-batch `micro` of `step`."""
        positions = self._positions(step, micro)
        gen = step_generator(self.cfg.seed, step, micro, self.accelerator.process_index)
        device = self.accelerator.device
        mean, std = self.latents.posterior(positions, device)
        z = (mean + std * torch.randn(mean.shape, generator=gen).to(device)) * self.scale
        noise = torch.randn(z.shape, generator=gen).to(device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(z),), generator=gen)
        t = t.to(device)
        drop = torch.rand(len(z), generator=gen) < self.cfg.condition_dropout
        prompts = [
            "" if d else self.prompts[p] for p, d in zip(positions, drop.tolist(), strict=True)
        ]
        ids, mask = self.tokenizer.encode(prompts)
        noisy = self.scheduler.add_noise(z, noise, t)
        with self.accelerator.autocast():
            pred = self.model(noisy, t, ids.to(device), mask.to(device))
        return F.mse_loss(pred.float(), noise)

    def _positions(self, step: int, micro: int) -> np.ndarray:
        """Frame positions of this process's share of a global batch (deterministic in step)."""
        cfg, size = self.cfg, self.cfg.micro_batch_size
        if self.weights is not None:
            gen = step_generator(cfg.seed, step, micro, -1)
            weights = torch.from_numpy(self.weights)
            batch = torch.multinomial(weights, size, replacement=True, generator=gen).numpy()
        else:
            batch = shuffled_positions(
                cfg.seed, step, micro, len(self.latents), self.steps_per_epoch, cfg.batch_size, size
            )
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        return batch[rank::processes]

    def save_final(self, out: Path) -> None:
        """Writes the EMA weights as RUN/unet and RUN/text_encoder, and the schedule."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        with ema_weights(self.ema, self.accelerator.unwrap_model(self.model)) as averaged:
            averaged.unet.save_pretrained(out / UNET_DIR)
            save_text_encoder(averaged.text_encoder, self.tokenizer, out / TEXT_DIR)
        self.scheduler.save_pretrained(out / SCHEDULER_DIR)


def latent_channels(latents) -> int:
    """Channels C of the latents served by a latent source."""
    return latents.posterior(np.array([0]), "cpu")[0].shape[1]


def build_denoiser(config: LDMConfig, tokenizer: PromptTokenizer, channels: int) -> Denoiser:
    """The trainable model of `config` (text encoder + UNet on `channels` latent channels),
    initialised from torch's global RNG."""
    te = config.text_encoder
    text = TextEncoder(
        tokenizer.vocab_size, te.max_length, width=te.width, layers=te.layers, heads=te.heads,
        ffn_mult=te.ffn_mult, dropout=te.dropout,
    )  # fmt: skip
    unet = build_unet(config.unet, channels, config.latent_size, te.width)
    return Denoiser(unet, text)
