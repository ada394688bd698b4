"""Training the image autoencoder (paper §4.3): `angiosynth train vae`.

Loss per image: `l1_weight` |x - x_hat| + `perceptual_weight` LPIPS(x_hat, x) + `kl_weight`
KL(q(z|x) || N(0, I)), the KL summed over latent elements; optionally a PatchGAN hinge term
(`gan_weight`, from `gan_start_step`). After every epoch the same loss (with the posterior mean)
is measured on the validation split; the best epoch is kept and training stops after `patience`
epochs without improvement. Finally the latent scale factor 1 / std(z) is measured on training
latents and stored in the model's config (`scaling_factor`), so the diffusion model sees
unit-variance latents.

A run directory holds::

    RUN/
      config.yaml     the resolved configuration (with the perceptual loss actually used)
      vae/            diffusers save_pretrained of the best epoch (safetensors + config.json)
      log.jsonl       one record per epoch
      metrics.json    best validation loss, epochs, steps, scale factor, seconds
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from torch.utils.data import DataLoader

from angiosynth.config import LDMConfig
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.diffusion import ArterialImages, arterial_rows
from angiosynth.models.autoencoder import PatchDiscriminator, build_vae
from angiosynth.runfiles import append_jsonl, write_json_atomic, write_yaml_atomic
from angiosynth.training.losses import (
    PerceptualLoss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_divergence,
    resolve_perceptual,
)
from angiosynth.training.phase import resolve_mixed_precision

VAE_DIR = "vae"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
#: Training latents used to measure the scale factor (a random subset beyond this).
SCALE_SAMPLE = 10_000

Progress = Callable[[Iterable, int, str], Iterable]


@dataclass(frozen=True)
class VAETrainResult:
    """What `train_vae` wrote and measured."""

    out: Path
    best_val_loss: float
    epochs: int
    steps: int
    scale_factor: float
    perceptual: str
    seconds: float


def train_vae(
    dataset_root: Path,
    config: LDMConfig,
    out: Path,
    progress: Progress | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    overwrite: bool = False,
) -> VAETrainResult:
    """Trains the autoencoder on the arterial frames of the training split; writes `out`.

    Runs on what `accelerate launch` provides (1 CPU, GPUs, nodes); `train_vae.mixed_precision`
    selects bf16/fp16 autocast.

    Raises:
        DatasetError: no arterial selection or no frames in a split.
        FileExistsError: `out` holds a model and `overwrite` is false.
    """
    out = Path(out)
    if (out / VAE_DIR).exists() and not overwrite:
        raise FileExistsError(f"{out}: holds an autoencoder already; use --overwrite to replace it")
    cfg = config.train_vae
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision))
    set_seed(cfg.seed)
    dataset = CuratedDataset(dataset_root)
    train_set, val_set = _image_sets(dataset, config)
    perceptual = _perceptual(cfg)
    resolved = _resolved_config(config, dataset.root, perceptual)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / LOG_FILE).unlink(missing_ok=True)
        write_yaml_atomic(out / CONFIG_FILE, resolved)
    start = time.monotonic()
    fit = _VAEFit(accelerator, config, train_set, val_set, perceptual)
    history = fit.run(out, progress, on_epoch)
    accelerator.wait_for_everyone()
    vae = AutoencoderKL.from_pretrained(out / VAE_DIR)
    scale = measure_scale_factor(vae, train_set, cfg.seed, accelerator.device)
    best = min(history, key=lambda r: r["val_loss"])
    result = VAETrainResult(
        out, best["val_loss"], len(history), fit.step, scale,
        resolved["train_vae"]["perceptual"], time.monotonic() - start,
    )  # fmt: skip
    if accelerator.is_main_process:
        vae.register_to_config(scaling_factor=scale)
        vae.save_pretrained(out / VAE_DIR)
        write_json_atomic(out / METRICS_FILE, _metrics(result, best, len(train_set), len(val_set)))
    accelerator.end_training()
    return result


def _image_sets(
    dataset: CuratedDataset, config: LDMConfig
) -> tuple[ArterialImages, ArterialImages]:
    size = config.data.image_size
    train = arterial_rows(dataset, config.data.train_split)
    val = arterial_rows(dataset, config.data.val_split)
    return (
        ArterialImages(dataset, train["frame_id"].to_numpy(), size),
        ArterialImages(dataset, val["frame_id"].to_numpy(), size),
    )


def _perceptual(cfg) -> PerceptualLoss | None:
    if cfg.perceptual == "none" or cfg.perceptual_weight == 0:
        return None
    return PerceptualLoss(
        resolve_perceptual(cfg.perceptual, cfg.perceptual_net), cfg.perceptual_net
    )


def _resolved_config(config: LDMConfig, dataset_root: Path, perceptual) -> dict:
    data = config.model_dump(mode="json")
    data["train_vae"]["perceptual"] = perceptual.kind if perceptual is not None else "none"
    return {"dataset": str(Path(dataset_root).resolve()), **data}


class _VAEFit:
    """Epoch loop with validation, early stopping and the optional PatchGAN."""

    def __init__(self, accelerator, config: LDMConfig, train_set, val_set, perceptual) -> None:
        cfg = config.train_vae
        self.accelerator, self.cfg, self.perceptual = accelerator, cfg, perceptual
        generator = torch.Generator().manual_seed(cfg.seed)
        train = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                           generator=generator)  # fmt: skip
        if len(train) == 0:
            raise ValueError(
                f"train_vae.batch_size {cfg.batch_size} exceeds the {len(train_set)} "
                "training frames"
            )
        val = DataLoader(val_set, batch_size=cfg.batch_size)
        vae = build_vae(config.vae, config.data.image_size)
        optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.vae, self.optimizer, self.train, self.val = accelerator.prepare(
            vae, optimizer, train, val
        )
        self.disc = self.disc_optimizer = None
        if cfg.gan_weight > 0:
            disc = PatchDiscriminator()
            disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
            self.disc, self.disc_optimizer = accelerator.prepare(disc, disc_opt)
        if perceptual is not None:
            perceptual.to(accelerator.device)
        self.step = 0

    def run(self, out: Path, progress: Progress | None, on_epoch) -> list[dict]:
        """Trains until `epochs`, `max_steps` or early stopping; saves the best epoch."""
        wrap = progress or (lambda items, total, desc: items)
        cfg, history, best, waited = self.cfg, [], math.inf, 0
        for epoch in range(1, cfg.epochs + 1):
            start = time.monotonic()
            batches = wrap(self.train, len(self.train), f"vae epoch {epoch}")
            train_loss = self._epoch(batches)
            val_loss = self._validate()
            seconds = round(time.monotonic() - start, 2)
            record = {"epoch": epoch, "step": self.step, "train_loss": train_loss,
                      "val_loss": val_loss, "seconds": seconds}  # fmt: skip
            history.append(record)
            if val_loss < best:
                best, waited = val_loss, 0
                self._save(out / VAE_DIR)
            else:
                waited += 1
            if self.accelerator.is_main_process:
                append_jsonl(out / LOG_FILE, record)
            if on_epoch is not None:
                on_epoch(record)
            if waited >= cfg.patience or self._done():
                break
        return history

    def _done(self) -> bool:
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    def _epoch(self, batches: Iterable) -> float:
        self.vae.train()
        total, count = 0.0, 0
        for images in batches:
            loss = self._step(images)
            total, count = total + loss, count + 1
            if self._done():
                break
        return self._mean(total, count)

    def _step(self, images: torch.Tensor) -> float:
        with self.accelerator.autocast():
            posterior = self.vae.encode(images).latent_dist
            recon = self.vae.decode(posterior.sample()).sample
            loss = self._reconstruction(images, recon, posterior).mean()
            if self._gan_active():
                loss = loss + self.cfg.gan_weight * hinge_generator_loss(self.disc(recon))
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.optimizer.step()
        if self._gan_active():
            self._discriminator_step(images, recon.detach())
        self.step += 1
        return loss.detach().item()

    def _gan_active(self) -> bool:
        return self.disc is not None and self.step >= self.cfg.gan_start_step

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        with self.accelerator.autocast():
            loss = hinge_discriminator_loss(self.disc(real), self.disc(fake))
        self.disc_optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.disc_optimizer.step()

    def _reconstruction(self, images, recon, posterior) -> torch.Tensor:
        """(B,) per-image loss: L1 + perceptual + KL."""
        cfg = self.cfg
        loss = cfg.l1_weight * (recon.float() - images).abs().flatten(1).mean(1)
        if self.perceptual is not None:
            loss = loss + cfg.perceptual_weight * self.perceptual(recon.float(), images)
        return loss + cfg.kl_weight * kl_divergence(posterior.mean, posterior.logvar).float()

    @torch.no_grad()
    def _validate(self) -> float:
        self.vae.eval()
        total, count = 0.0, 0
        for images in self.val:
            with self.accelerator.autocast():
                posterior = self.vae.encode(images).latent_dist
                recon = self.vae.decode(posterior.mode()).sample
                loss = self._reconstruction(images, recon, posterior)
            loss = self.accelerator.gather_for_metrics(loss)
            total, count = total + loss.sum().item(), count + loss.numel()
        return total / max(count, 1)

    def _mean(self, total: float, count: int) -> float:
        values = torch.tensor([total, count], device=self.accelerator.device, dtype=torch.float64)
        total, count = self.accelerator.reduce(values, reduction="sum").tolist()
        return total / max(count, 1)

    def _save(self, directory: Path) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.accelerator.unwrap_model(self.vae).save_pretrained(directory)


@torch.no_grad()
def measure_scale_factor(
    vae: AutoencoderKL, images: ArterialImages, seed: int, device, batch_size: int = 32
) -> float:
    """1 / std of posterior samples z over (up to SCALE_SAMPLE) training images."""
    vae = vae.to(device).eval()
    rng = np.random.default_rng(seed)
    n = len(images)
    positions = np.sort(rng.choice(n, SCALE_SAMPLE, replace=False)) if n > SCALE_SAMPLE else None
    positions = np.arange(n) if positions is None else positions
    generator = torch.Generator(device="cpu").manual_seed(seed)
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, len(positions), batch_size):
        batch = images.read(positions[i : i + batch_size]).to(device)
        dist = vae.encode(batch).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator).to(device)
        z = (dist.mean + dist.std * noise).double()
        total += z.sum().item()
        total_sq += z.pow(2).sum().item()
        count += z.numel()
    mean = total / count
    return float(1.0 / math.sqrt(total_sq / count - mean**2))


def _metrics(result: VAETrainResult, best: dict, n_train: int, n_val: int) -> dict:
    return {
        "best_val_loss": result.best_val_loss,
        "best_epoch": best["epoch"],
        "epochs": result.epochs,
        "steps": result.steps,
        "scale_factor": result.scale_factor,
        "perceptual": result.perceptual,
        "train_frames": n_train,
        "val_frames": n_val,
        "seconds": round(result.seconds, 1),
    }
