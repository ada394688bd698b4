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
takes its slice of every global batch.

A run directory holds::

    RUN/
      config.yaml        resolved configuration (dataset, VAE, scale factor, sizes)
      vae/               copy of the autoencoder (with its scaling_factor)
      unet/              EMA UNet (diffusers save_pretrained, safetensors)
      text_encoder/      EMA text encoder + its vocabulary
      scheduler/         the DDPM schedule (scheduler_config.json)
      latents.npy, latents.json   cached posteriors of the training frames and their key
      checkpoints/checkpoint-XXXXXXX/   accelerate's state (model as safetensors, optimiser,
                         LR schedule, RNG states), ema.safetensors, state.json (step)
      log.jsonl, metrics.json
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin
from diffusers import AutoencoderKL
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from angiosynth.config import LDMConfig
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.diffusion import ArterialImages, arterial_rows, view_weights
from angiosynth.diffusion.schedulers import training_scheduler
from angiosynth.models.denoiser import Denoiser
from angiosynth.models.text_encoder import PromptTokenizer, TextEncoder, save_text_encoder
from angiosynth.models.unet import build_unet
from angiosynth.runfiles import append_jsonl, write_json_atomic, write_yaml_atomic
from angiosynth.training.phase import resolve_mixed_precision
from angiosynth.training.vae import VAE_DIR

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
LATENTS_FILE = "latents.npy"
LATENTS_KEY_FILE = "latents.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
EMA_FILE = "ema.safetensors"
UNET_DIR, TEXT_DIR, SCHEDULER_DIR = "unet", "text_encoder", "scheduler"
#: Settings that may change when a run is resumed (how long it trains, how often it saves).
RESUMABLE_CHANGES = ("epochs", "max_steps", "checkpoint_every", "keep_checkpoints", "log_every")

Progress = Callable[[Iterable, int, str], Iterable]


class ResumeError(ValueError):
    """A run cannot be resumed (no checkpoint, or a different configuration)."""


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
        DatasetError, FileNotFoundError, FileExistsError, ResumeError.
    """
    out = Path(out)
    cfg = config.train_ldm
    if unconditional:
        config = config.model_copy(
            update={"train_ldm": cfg.model_copy(update={"condition_dropout": 1.0})}
        )
        cfg = config.train_ldm
    _check_out(out, resume, overwrite)
    # Batches are drawn by step, not from a DataLoader, so accumulation must not follow one;
    # the LR schedule counts optimiser steps, whatever the number of processes.
    accumulation = GradientAccumulationPlugin(
        num_steps=cfg.gradient_accumulation, sync_with_dataloader=False
    )
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        gradient_accumulation_plugin=accumulation,
        step_scheduler_with_optimizer=False,
    )
    vae = _load_vae(vae_run)
    dataset = CuratedDataset(dataset_root)
    rows = arterial_rows(dataset, config.data.train_split)
    resolved = _resolved_config(config, dataset.root, vae_run, vae, unconditional)
    if resume:
        _check_resumable(out, resolved)
        if accelerator.is_main_process:
            write_yaml_atomic(out / CONFIG_FILE, resolved)  # with the new length, if changed
    elif accelerator.is_main_process:
        _start_run_dir(out, vae_run, resolved)
    accelerator.wait_for_everyone()
    latents = _latent_source(accelerator, vae, dataset, rows, config, out)
    fit = _LDMFit(accelerator, config, rows, latents, vae.config.scaling_factor)
    if resume:
        fit.load(_latest_checkpoint(out))
    start = time.monotonic()
    last = stop_after if stop_after is not None else fit.total_steps
    loss = fit.run(out, min(last, fit.total_steps), progress)
    if fit.step >= fit.total_steps:
        fit.save_final(out)
    seconds = time.monotonic() - start
    if accelerator.is_main_process:
        write_json_atomic(out / METRICS_FILE, {
            "steps": fit.step, "total_steps": fit.total_steps, "final_loss": loss,
            "train_frames": len(rows), "seconds": round(seconds, 1),
        })  # fmt: skip
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return LDMTrainResult(out, fit.step, loss, seconds)


def _check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / CONFIG_FILE).exists():
            raise ResumeError(f"{out}: no run to resume (missing {CONFIG_FILE})")
        return
    if (out / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out}: holds a run already; use --resume or --overwrite")


def _load_vae(vae_run: Path) -> AutoencoderKL:
    path = Path(vae_run) / VAE_DIR
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{vae_run}: no autoencoder (missing {VAE_DIR}/config.json)")
    vae = AutoencoderKL.from_pretrained(path).eval().requires_grad_(False)
    if vae.config.scaling_factor == 1.0:
        raise ValueError(f"{vae_run}: the autoencoder has no measured scaling_factor")
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


def _start_run_dir(out: Path, vae_run: Path, resolved: dict) -> None:
    if out.exists():
        for name in (CHECKPOINTS_DIR, UNET_DIR, TEXT_DIR, VAE_DIR, SCHEDULER_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / LOG_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(vae_run) / VAE_DIR, out / VAE_DIR)
    write_yaml_atomic(out / CONFIG_FILE, resolved)


def _check_resumable(out: Path, resolved: dict) -> None:
    saved = yaml.safe_load((out / CONFIG_FILE).read_text())
    for key in sorted(set(saved) | set(resolved)):
        a, b = saved.get(key), resolved.get(key)
        if key == "train_ldm" and isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k not in RESUMABLE_CHANGES}
            b = {k: v for k, v in b.items() if k not in RESUMABLE_CHANGES}
        if a != b:
            raise ResumeError(f"{out}: cannot resume with a different {key} than the run's")


def _latest_checkpoint(out: Path) -> Path:
    checkpoints = sorted((out / CHECKPOINTS_DIR).glob("checkpoint-*"))
    if not checkpoints:
        raise ResumeError(f"{out}: no checkpoint to resume from")
    return checkpoints[-1]


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
    tmp = path.with_name(f".{path.name}.tmp.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    for i in range(0, len(images), batch_size):
        positions = np.arange(i, min(i + batch_size, len(images)))
        dist = vae.encode(images.read(positions).to(device)).latent_dist
        array[positions] = torch.cat([dist.mean, dist.std], dim=1).float().cpu().numpy()
    array.flush()
    del array
    tmp.replace(path)


# --- the loop -----------------------------------------------------------------------------------


def step_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator seeded by (seed, parts...), e.g. (seed, step, micro-batch, process)."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class _LDMFit:
    """Optimiser, EMA, step loop and checkpoints of one training run."""

    def __init__(self, accelerator, config: LDMConfig, rows, latents, scale: float) -> None:
        cfg = self.cfg = config.train_ldm
        self.accelerator, self.config, self.latents, self.scale = (
            accelerator,
            config,
            latents,
            scale,
        )
        if cfg.batch_size // cfg.gradient_accumulation < accelerator.num_processes:
            raise ValueError(
                f"train_ldm.batch_size {cfg.batch_size} leaves no images for some of the "
                f"{accelerator.num_processes} processes"
            )
        self.prompts = rows["prompt"].tolist()
        self.weights = view_weights(rows["view"]) if cfg.condition_balanced else None
        self.steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.scheduler = training_scheduler(config.diffusion)
        self.tokenizer = PromptTokenizer.from_template(config.text_encoder.max_length)
        torch.manual_seed(cfg.seed)
        denoiser = _build_denoiser(config, self.tokenizer, latents)
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
        self.step = 0

    def run(self, out: Path, last: int, progress: Progress | None) -> float:
        """Trains steps `self.step` .. `last` - 1, with checkpoints periodically and at `last`."""
        wrap = progress if progress is not None and self.accelerator.is_main_process else None
        steps = range(self.step, last)
        steps = wrap(steps, len(steps), "ldm") if wrap else steps
        window, started, loss = [], time.monotonic(), math.nan
        for step in steps:
            loss = self._step(step)
            window.append(loss)
            self.step = step + 1
            if self.step % self.cfg.log_every == 0 or self.step == last:
                self._log(out, window, started)
                window, started = [], time.monotonic()
            if self.step % self.cfg.checkpoint_every == 0 or self.step == last:
                self.save(out)
        return loss

    def _step(self, step: int) -> float:
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
        return self.accelerator.reduce(
            torch.tensor(total, device=self.accelerator.device), reduction="mean"
        ).item()

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
        cfg, n = self.cfg, len(self.latents)
        size = cfg.batch_size // cfg.gradient_accumulation
        if self.weights is not None:
            gen = step_generator(cfg.seed, step, micro, -1)
            weights = torch.from_numpy(self.weights)
            batch = torch.multinomial(weights, size, replacement=True, generator=gen).numpy()
        else:
            epoch, index = divmod(step, self.steps_per_epoch)
            order = torch.randperm(n, generator=step_generator(cfg.seed, epoch, -2)).numpy()
            start = index * cfg.batch_size + micro * size
            batch = np.take(order, np.arange(start, start + size), mode="wrap")
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        return batch[rank::processes]

    def _log(self, out: Path, window: list[float], started: float) -> None:
        if not self.accelerator.is_main_process:
            return
        record = {
            "step": self.step,
            "loss": float(np.mean(window)),
            "lr": self.lr_schedule.get_last_lr()[0],
            "steps_per_s": round(len(window) / max(time.monotonic() - started, 1e-9), 3),
        }
        append_jsonl(out / LOG_FILE, record)

    def save(self, out: Path) -> None:
        """Writes checkpoints/checkpoint-<step> atomically and keeps the last K."""
        root = out / CHECKPOINTS_DIR
        final = root / f"checkpoint-{self.step:07d}"
        tmp = root / f".tmp-checkpoint-{self.step:07d}"
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            root.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp), safe_serialization=True)
        if self.accelerator.is_main_process:
            save_file(
                {
                    f"{i:04d}": p.detach().contiguous().cpu()
                    for i, p in enumerate(self.ema.shadow_params)
                },
                tmp / EMA_FILE,
            )
            state = {"step": self.step, "scale_factor": self.scale,
                     "ema_optimization_step": self.ema.optimization_step}  # fmt: skip
            write_json_atomic(tmp / STATE_FILE, state)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in sorted(root.glob("checkpoint-*"))[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()

    def load(self, checkpoint: Path) -> None:
        """Restores model, EMA, optimiser, LR schedule and RNG states; continues at its step."""
        self.accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        shadow = load_file(checkpoint / EMA_FILE)
        for i, param in enumerate(self.ema.shadow_params):
            param.data.copy_(shadow[f"{i:04d}"])
        self.ema.optimization_step = state["ema_optimization_step"]
        self.step = state["step"]

    def save_final(self, out: Path) -> None:
        """Writes the EMA weights as RUN/unet and RUN/text_encoder, and the schedule."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        ema_model = _build_denoiser(self.config, self.tokenizer, self.latents)
        self.ema.copy_to(ema_model.parameters())
        ema_model.unet.save_pretrained(out / UNET_DIR)
        save_text_encoder(ema_model.text_encoder, self.tokenizer, out / TEXT_DIR)
        self.scheduler.save_pretrained(out / SCHEDULER_DIR)


def _build_denoiser(config: LDMConfig, tokenizer: PromptTokenizer, latents) -> Denoiser:
    te = config.text_encoder
    text = TextEncoder(
        tokenizer.vocab_size, te.max_length, width=te.width, layers=te.layers, heads=te.heads,
        ffn_mult=te.ffn_mult, dropout=te.dropout,
    )  # fmt: skip
    channels = latents.posterior(np.array([0]), "cpu")[0].shape[1]
    unet = build_unet(config.unet, channels, config.latent_size, te.width)
    return Denoiser(unet, text)
