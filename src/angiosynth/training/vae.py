"""Training the image autoencoder (paper §4.3): `angiosynth train vae`.

Loss per image: `l1_weight` |x - x_hat| + `perceptual_weight` LPIPS(x_hat, x) + `kl_weight`
KL(q(z|x) || N(0, I)), the KL summed over latent elements; optionally a PatchGAN hinge term
(`gan_weight`, from `gan_start_step`; the discriminator is frozen while the autoencoder's loss
back-propagates, and has its own AdamW `disc_lr`, `disc_betas`). Each optimiser step
accumulates `gradient_accumulation` micro-batches. After every epoch the same loss (with the
posterior mean) is measured on the validation split; the best epoch is kept and training stops
after `patience` epochs without improvement. Checkpoints (`training.checkpoint`, every
`checkpoint_every` steps) make `resume` continue exactly. Finally the latent scale factor
1 / std(z) is measured on training latents and stored in the model's config
(`scaling_factor`), so the diffusion model sees unit-variance latents.

A run directory holds::

    RUN/
      config.yaml     the resolved configuration (with the perceptual loss actually used)
      vae/            diffusers save_pretrained of the best epoch (safetensors + config.json)
      checkpoints/    the latest checkpoints (autoencoder, discriminator, optimisers, RNG)
      log.jsonl       a record every `log_every` steps and one per epoch (with val_loss)
      metrics.json    best validation loss, epochs, steps, scale factor, seconds
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from torch.utils.data import DataLoader

from angiosynth.config import LDMConfig
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.data.diffusion import ArterialImages, arterial_rows
from angiosynth.errors import OptionError
from angiosynth.models.autoencoder import build_vae
from angiosynth.models.gan import PatchDiscriminator
from angiosynth.progress import Progress
from angiosynth.runfiles import LOG_FILE, METRICS_FILE, write_json_atomic
from angiosynth.training.batches import LoaderBatches
from angiosynth.training.checkpoint import CHECKPOINTS_DIR, Checkpointer
from angiosynth.training.loop import EpochEnd, TrainLoop, make_accelerator
from angiosynth.training.losses import (
    PerceptualLoss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_divergence,
    resolve_perceptual,
)
from angiosynth.training.rundir import check_out, start_run_dir

VAE_DIR = "vae"
#: Training latents used to measure the scale factor (a random subset beyond this).
SCALE_SAMPLE = 10_000


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
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> VAETrainResult | None:
    """Trains the autoencoder on the arterial frames of the training split; writes `out`.

    Runs on what `accelerate launch` provides (1 CPU, GPUs, nodes); `train_vae.mixed_precision`
    selects bf16/fp16 autocast.

    Args:
        stop_after: stop (with a checkpoint) after this many steps, as if interrupted; the
            result is then None (no scale factor yet).
        resume: continue from the latest checkpoint in `out`.

    Raises:
        DatasetError: no arterial selection or no frames in a split.
        OutputExistsError: `out` holds a model and neither `overwrite` nor `resume` is given.
        ResumeError: nothing to resume, or another configuration than the run's.
    """
    out = Path(out)
    cfg = config.train_vae
    accelerator = make_accelerator(cfg.mixed_precision, cfg.gradient_accumulation)
    set_seed(cfg.seed)
    dataset = CuratedDataset(dataset_root)
    train_set, val_set = _image_sets(dataset, config)
    perceptual = _perceptual(cfg)
    resolved = _resolved_config(config, dataset.root, perceptual)
    check_out(out, resume, overwrite, resolved, "train_vae")
    if accelerator.is_main_process:
        start_run_dir(out, resolved, fresh=not resume, outputs=(VAE_DIR,))
    start = time.monotonic()
    fit = _VAEFit(accelerator, config, train_set, val_set, perceptual, out)
    loop = TrainLoop(
        accelerator, fit.step, cfg, cfg.total_steps(len(fit.batches)), log_file=out / LOG_FILE,
        checkpointer=fit.checkpointer(out / CHECKPOINTS_DIR), extra_state=fit.state,
        steps_per_epoch=len(fit.batches), end_of_epoch=fit.end_of_epoch, on_log=_epochs(on_epoch),
        progress=progress, desc="vae",
    )  # fmt: skip
    if resume:
        fit.restore(loop.restore(loop.checkpointer.latest()))
    steps = loop.run(fit.step_count, stop_after)
    accelerator.wait_for_everyone()
    if not fit.finished(steps, loop.total_steps):
        accelerator.end_training()
        return None
    vae = AutoencoderKL.from_pretrained(out / VAE_DIR)
    scale = measure_scale_factor(vae, train_set, cfg.seed, accelerator.device)
    best = min(fit.history, key=lambda r: r["val_loss"])
    result = VAETrainResult(
        out, best["val_loss"], len(fit.history), steps, scale,
        resolved["train_vae"]["perceptual"], time.monotonic() - start,
    )  # fmt: skip
    if accelerator.is_main_process:
        vae.register_to_config(scaling_factor=scale)
        vae.save_pretrained(out / VAE_DIR)
        write_json_atomic(out / METRICS_FILE, _metrics(result, best, len(train_set), len(val_set)))
    accelerator.end_training()
    return result


def _epochs(on_epoch: Callable[[dict], None] | None) -> Callable[[dict], None] | None:
    """The log callback that passes only the epoch records (those with a val_loss) on."""
    if on_epoch is None:
        return None
    return lambda record: on_epoch(record) if "val_loss" in record else None


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
    """Models, optimisers, the step function and the epoch hook (validation, early stopping,
    best epoch) of one autoencoder run."""

    def __init__(self, accelerator, config: LDMConfig, train_set, val_set, perceptual, out):
        cfg = config.train_vae
        self.accelerator, self.cfg, self.perceptual, self.out = accelerator, cfg, perceptual, out
        per_process, uneven = divmod(cfg.micro_batch_size, accelerator.num_processes)
        if per_process == 0 or uneven:
            raise OptionError(
                f"train_vae.batch_size {cfg.batch_size} / gradient_accumulation "
                f"{cfg.gradient_accumulation} does not split into {accelerator.num_processes} "
                "processes"
            )
        self.generator = torch.Generator().manual_seed(cfg.seed)
        train = DataLoader(train_set, batch_size=per_process, shuffle=True, drop_last=True,
                           generator=self.generator)  # fmt: skip
        if len(train) < cfg.gradient_accumulation:
            raise OptionError(
                f"train_vae.batch_size {cfg.batch_size} exceeds the {len(train_set)} "
                "training frames"
            )
        val = DataLoader(val_set, batch_size=per_process)
        vae = build_vae(config.vae, config.data.image_size)
        optimizer = torch.optim.AdamW(
            vae.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.vae, self.optimizer, train, self.val = accelerator.prepare(vae, optimizer, train, val)
        self.batches = _Epochs(LoaderBatches(train, self.generator), cfg.gradient_accumulation)
        self.disc = self.disc_optimizer = None
        if cfg.gan_weight > 0:
            disc = PatchDiscriminator()
            disc_opt = torch.optim.AdamW(
                disc.parameters(), lr=cfg.disc_lr or cfg.lr, betas=cfg.disc_betas,
                weight_decay=cfg.weight_decay,
            )  # fmt: skip
            self.disc, self.disc_optimizer = accelerator.prepare(disc, disc_opt)
        if perceptual is not None:
            perceptual.to(accelerator.device)
        self.history: list[dict] = []
        self.best, self.waited, self.step_count = math.inf, 0, 0
        self.epoch_started = time.monotonic()

    def checkpointer(self, root: Path) -> Checkpointer:
        """Checkpoints of the autoencoder, the discriminator and their optimisers, by name."""
        models, optimizers = {"vae": self.vae}, {"vae": self.optimizer}
        if self.disc is not None:
            models["discriminator"], optimizers["discriminator"] = self.disc, self.disc_optimizer
        return Checkpointer(root, self.accelerator, models=models, optimizers=optimizers,
                            keep=self.cfg.keep_checkpoints)  # fmt: skip

    def state(self) -> dict:
        """The run's JSON state for a checkpoint (batches, validation history, patience)."""
        return {"batches": self.batches.loader_batches.state(), "history": self.history,
                "best": self.best, "waited": self.waited}  # fmt: skip

    def restore(self, state: dict) -> None:
        """Continues from a checkpoint's state (`TrainLoop.restore`)."""
        self.batches.loader_batches.restore(state["batches"])
        self.history, self.waited = state["history"], state["waited"]
        self.best, self.step_count = state["best"], state["step"]

    def finished(self, steps: int, total: int) -> bool:
        """Whether the run ended (all steps, or stopped early) rather than was cut short."""
        return steps >= total or self.waited >= self.cfg.patience

    def step(self, step: int) -> dict:
        """One optimiser step of the autoencoder (and the discriminator once the GAN term is
        on) over `gradient_accumulation` micro-batches; {"loss": mean autoencoder loss}."""
        models = (self.vae,) if self.disc is None else (self.vae, self.disc)
        total = 0.0
        for _ in range(self.cfg.gradient_accumulation):
            images = self.batches.next()
            with self.accelerator.accumulate(*models):
                loss, recon = self._autoencoder_step(images, step)
                if self._gan_active(step):
                    self._discriminator_step(images, recon.detach())
            total += loss / self.cfg.gradient_accumulation
        self.step_count = step + 1
        return {"loss": total}

    def _autoencoder_step(self, images: torch.Tensor, step: int) -> tuple[float, torch.Tensor]:
        gan = self._gan_active(step)
        if gan:
            self.disc.requires_grad_(False)
        with self.accelerator.autocast():
            posterior = self.vae.encode(images).latent_dist
            recon = self.vae.decode(posterior.sample()).sample
            loss = self._reconstruction(images, recon, posterior).mean()
            if gan:
                loss = loss + self.cfg.gan_weight * hinge_generator_loss(self.disc(recon))
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if gan:
            self.disc.requires_grad_(True)
        return loss.detach().item(), recon

    def _gan_active(self, step: int) -> bool:
        return self.disc is not None and step >= self.cfg.gan_start_step

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        with self.accelerator.autocast():
            loss = hinge_discriminator_loss(self.disc(real), self.disc(fake))
        self.accelerator.backward(loss)
        self.disc_optimizer.step()
        self.disc_optimizer.zero_grad(set_to_none=True)

    def _reconstruction(self, images, recon, posterior) -> torch.Tensor:
        """(B,) per-image loss: L1 + perceptual + KL."""
        cfg = self.cfg
        loss = cfg.l1_weight * (recon.float() - images).abs().flatten(1).mean(1)
        if self.perceptual is not None:
            loss = loss + cfg.perceptual_weight * self.perceptual(recon.float(), images)
        return loss + cfg.kl_weight * kl_divergence(posterior.mean, posterior.logvar).float()

    def end_of_epoch(self, epoch: int, means: dict) -> EpochEnd:
        """Validates; saves RUN/vae when the validation loss improved; stops after `patience`
        epochs without improvement."""
        val_loss = self._validate()
        record = {"epoch": epoch, "train_loss": means.get("loss", math.nan),
                  "val_loss": val_loss,
                  "seconds": round(time.monotonic() - self.epoch_started, 2)}  # fmt: skip
        self.history.append({"step": self.step_count, **record})
        if val_loss < self.best:
            self.best, self.waited = val_loss, 0
            self._save(self.out / VAE_DIR)
        else:
            self.waited += 1
        self.epoch_started = time.monotonic()
        return EpochEnd(record, stop=self.waited >= self.cfg.patience)

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
        self.vae.train()
        return total / max(count, 1)

    def _save(self, directory: Path) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.accelerator.unwrap_model(self.vae).save_pretrained(directory)


class _Epochs:
    """A LoaderBatches whose epoch is counted in optimiser steps (batches / accumulation)."""

    def __init__(self, loader_batches: LoaderBatches, accumulation: int) -> None:
        self.loader_batches, self.accumulation = loader_batches, accumulation

    def __len__(self) -> int:
        return len(self.loader_batches) // self.accumulation

    def next(self) -> torch.Tensor:
        return self.loader_batches.next()


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
