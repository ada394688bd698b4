"""Training the vessel segmenter of CAS-GAN: `angiosynth train segmenter`.

Each step draws a batch of random crops (`data.crop_size`) of angiograms and, at the same
places, of their vessel masks, flipped at random horizontally and vertically (`data.flip`);
images go in as [-1, 1]. The loss is BCE with logits (vessel pixels weighted `pos_weight`) plus
`dice_weight` x (1 - soft Dice) of the probabilities over the whole batch. AdamW; the learning
rate is constant, then decays linearly to 0 over the last `decay_share` of the steps. Which
frames a step takes follows from (seed, epoch) and the crops and flips from (seed, step,
process) (`training.batches`), so a resumed run trains on what an uninterrupted one would;
checkpoints (`training.checkpoint`) hold the network, its optimiser and LR schedule and the RNG
states.

A run directory holds::

    RUN/
      config.yaml     the resolved configuration (source, targets, model, data, train)
      segmenter/      model.safetensors + config.json (`gan.segmenter.load_segmenter`)
      checkpoints/    the latest checkpoints
      log.jsonl       mean losses, lr and speed every `log_every` steps
      metrics.json    steps, seconds, seconds per step, last losses, frames; the command line
                      adds the held-out scores under "held_out"
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from angiosynth.config import SegmenterConfig
from angiosynth.data.segmentation import SegmentationSet
from angiosynth.errors import OptionError
from angiosynth.gan.segmenter import SEGMENTER_DIR, save_segmenter
from angiosynth.models.segmenter import VesselUNet
from angiosynth.progress import Progress
from angiosynth.runfiles import LOG_FILE, METRICS_FILE, write_json_atomic
from angiosynth.training.batches import shuffled_positions, step_generator
from angiosynth.training.checkpoint import CHECKPOINTS_DIR, Checkpointer
from angiosynth.training.loop import TrainLoop, make_accelerator
from angiosynth.training.rundir import check_out, start_run_dir

#: Added to both sides of the soft Dice ratio, so a batch without vessels has a finite loss.
DICE_SMOOTH = 1.0


@dataclass(frozen=True)
class SegmenterResult:
    """What `train_segmenter` wrote and measured."""

    out: Path
    steps: int
    seconds: float
    seconds_per_step: float
    last_losses: dict


def train_segmenter(
    train: SegmentationSet,
    config: SegmenterConfig,
    out: Path,
    progress: Progress | None = None,
    on_log: Callable[[dict], None] | None = None,
    overwrite: bool = False,
    *,
    resume: bool = False,
    stop_after: int | None = None,
) -> SegmenterResult | None:
    """Trains a `VesselUNet` on `train` and writes the run directory `out`.

    Runs on what `accelerate launch` provides; `train.mixed_precision` selects bf16/fp16.

    Args:
        stop_after: stop with a checkpoint after this many steps, as if interrupted (the result
            is then None).
        resume: continue from the latest checkpoint in `out`.
        on_log: called with every log record.

    Raises:
        OptionError: crops larger than the frames, or a batch that does not split over the
            processes.
        OutputExistsError, ResumeError: see `training.rundir.check_out`.
    """
    out, cfg = Path(out), config.train
    accelerator = make_accelerator(cfg.mixed_precision)
    set_seed(cfg.seed)
    crops = MaskedCrops(train, config, accelerator.num_processes)
    resolved = {"source": train.description, "targets": train.targets,
                **config.model_dump(mode="json")}  # fmt: skip
    check_out(out, resume, overwrite, resolved, "train")
    if accelerator.is_main_process:
        start_run_dir(out, resolved, fresh=not resume, outputs=(SEGMENTER_DIR,))
    fit = _SegmenterFit(accelerator, config, crops)
    total = cfg.total_steps(crops.steps_per_epoch)
    fit.schedule(total)
    loop = TrainLoop(
        accelerator, fit.step, cfg, total, log_file=out / LOG_FILE,
        checkpointer=fit.checkpointer(out / CHECKPOINTS_DIR), learning_rate=fit.learning_rate,
        on_log=on_log, progress=progress, desc="segmenter",
    )  # fmt: skip
    if resume:
        fit.restore(loop.restore(loop.checkpointer.latest()))
    started = time.monotonic()
    steps = loop.run(fit.step_count, stop_after)
    accelerator.wait_for_everyone()
    if steps < total:
        accelerator.end_training()
        return None
    seconds = time.monotonic() - started
    result = SegmenterResult(out, steps, seconds, seconds / max(steps - fit.resumed_at, 1),
                             loop.last)  # fmt: skip
    if accelerator.is_main_process:
        save_segmenter(accelerator.unwrap_model(fit.net), config, out / SEGMENTER_DIR)
        write_json_atomic(out / METRICS_FILE, _metrics(result, crops, train))
    accelerator.end_training()
    return result


class MaskedCrops:
    """The crops of step i: frames by a seeded permutation per epoch, each cropped at a random
    place and flipped at random, the mask alike; images (n, 1, crop, crop) in [-1, 1] and
    masks (n, 1, crop, crop) float 0/1."""

    def __init__(self, data: SegmentationSet, config: SegmenterConfig, processes: int) -> None:
        cfg = config.train
        per_process, uneven = divmod(cfg.batch_size, processes)
        if per_process == 0 or uneven:
            raise OptionError(
                f"segmenter.train.batch_size {cfg.batch_size} does not split into "
                f"{processes} processes"
            )
        height, width = data.images.shape
        self.crop, self.flip = config.data.crop_size, config.data.flip
        if self.crop > min(height, width):
            raise OptionError(
                f"segmenter.data.crop_size {self.crop} exceeds the frames ({width} x {height})"
            )
        self.data, self.seed = data, cfg.seed
        self.batch, self.per_process = cfg.batch_size, per_process
        self.steps_per_epoch = max(1, math.ceil(len(data) / cfg.batch_size))

    def batch_of(self, step: int, process: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (images, masks) crops of `process` at `step`."""
        positions = shuffled_positions(
            self.seed, step, process, len(self.data), self.steps_per_epoch, self.batch,
            self.per_process,
        )  # fmt: skip
        images = torch.from_numpy(self.data.images.read(positions))
        masks = torch.from_numpy(self.data.masks[positions].astype(np.float32))
        pairs = torch.stack([images, masks], dim=1)  # (n, 2, H, W): cropped and flipped together
        gen = step_generator(self.seed, step, process)
        crops = torch.stack([self._crop(pair, gen) for pair in pairs])
        return crops[:, :1] * 2 - 1, crops[:, 1:]

    def _crop(self, pair: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        c = self.crop
        top = int(torch.randint(pair.shape[-2] - c + 1, (), generator=gen))
        left = int(torch.randint(pair.shape[-1] - c + 1, (), generator=gen))
        crop = pair[:, top : top + c, left : left + c]
        if self.flip:
            flips = torch.rand(2, generator=gen)
            dims = [d for d, u in ((-1, flips[0]), (-2, flips[1])) if u < 0.5]
            crop = crop.flip(dims) if dims else crop
        return crop


def segmentation_loss(
    logits: torch.Tensor, masks: torch.Tensor, dice_weight: float, pos_weight: float | None
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE with logits + dice_weight x (1 - soft Dice) over the batch.

    Args:
        logits: (B, 1, H, W) vessel logits.
        masks: (B, 1, H, W) float 0/1 targets.
        dice_weight: weight of the soft Dice term.
        pos_weight: BCE weight of vessel pixels (None: 1).

    Returns:
        The loss and its parts for the log ({"bce", "dice"}: the Dice term is 1 - soft Dice).
    """
    logits = logits.float()
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, masks, pos_weight=weight)
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * masks).sum()
    dice = 1 - (2 * overlap + DICE_SMOOTH) / (probabilities.sum() + masks.sum() + DICE_SMOOTH)
    loss = bce + dice_weight * dice
    return loss, {"bce": float(bce.detach()), "dice": float(dice.detach())}


class _SegmenterFit:
    """The network, its optimiser and schedule and the step function of one run."""

    def __init__(self, accelerator, config: SegmenterConfig, crops: MaskedCrops) -> None:
        cfg = config.train
        self.accelerator, self.cfg, self.crops = accelerator, cfg, crops
        net = VesselUNet(config.model.channels, config.model.groups)
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas,
                                      weight_decay=cfg.weight_decay)  # fmt: skip
        self.net, self.optimizer = accelerator.prepare(net, optimizer)
        self.step_count = self.resumed_at = 0

    def schedule(self, total: int) -> None:
        """Constant lr, then linear decay to 0 over the last `decay_share` of `total` steps."""
        start = total - round(total * self.cfg.decay_share)

        def factor(step: int) -> float:
            return 1.0 - max(0, step - start) / (total - start + 1)

        self.sched = self.accelerator.prepare(
            torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        )

    def checkpointer(self, root: Path) -> Checkpointer:
        return Checkpointer(
            root, self.accelerator, models={"segmenter": self.net},
            optimizers={"segmenter": self.optimizer}, schedules={"segmenter": self.sched},
            keep=self.cfg.keep_checkpoints,
        )  # fmt: skip

    def restore(self, state: dict) -> None:
        self.step_count = self.resumed_at = state["step"]

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, step: int) -> dict:
        """One optimiser step on the crops of `step`; the losses for the log."""
        process = self.accelerator.process_index
        images, masks = (t.to(self.accelerator.device) for t in self.crops.batch_of(step, process))
        with self.accelerator.autocast():
            logits = self.net(images)
        loss, parts = segmentation_loss(logits, masks, self.cfg.dice_weight, self.cfg.pos_weight)
        self.accelerator.backward(loss)
        if self.cfg.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(self.net.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.sched.step()
        self.step_count = step + 1
        return {"loss": float(loss.detach()), **parts}


def _metrics(result: SegmenterResult, crops: MaskedCrops, train: SegmentationSet) -> dict:
    return {
        "steps": result.steps,
        "steps_per_epoch": crops.steps_per_epoch,
        "frames": len(train),
        "targets": train.targets,
        "vessel_share": round(float(train.masks.mean()), 6),
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds_per_step, 4),
        "last_losses": result.last_losses,
    }
