"""The one fit of the frame classifiers (the phase classifier and the view classifier).

A ResNet-18 from scratch learns K binary logits with BCE (optionally weighting positives),
AdamW and a one-cycle learning rate (20 % warm-up, cosine decay), from a DataLoader of
augmented (1, 128, 128) frames, on the step loop of `training.loop` (accelerate: devices,
bf16, processes, accumulation). After every epoch `evaluate(model)` measures the holdout; the
epoch's record (train loss, holdout, seconds) goes to MODEL/log.jsonl and to `on_epoch`.
Checkpoints, when `checkpoint_every` is set, fall on epoch boundaries (`ClassifierFit.run`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from angiosynth.config import ClassifierTrainConfig
from angiosynth.errors import OptionError
from angiosynth.models.classifiers import predict_logits
from angiosynth.progress import Progress
from angiosynth.runfiles import LOG_FILE
from angiosynth.runtime import autocast, deterministic_algorithms
from angiosynth.training.batches import LoaderBatches
from angiosynth.training.checkpoint import CHECKPOINTS_DIR, Checkpointer
from angiosynth.training.loop import EpochEnd, TrainLoop, make_accelerator


class ClassifierFit:
    """Trains one classifier (module docstring).

    Args:
        model: the classifier, (B, 1, H, W) -> (B, K) logits (or (B, 1) for one head).
        frames: the training Dataset of (image, target) pairs, targets (K,) or scalars.
        cfg: the loop settings.
        evaluate: the holdout measure of the model after an epoch (a JSON dict).
        pos_weight: BCE's weight on positives.
        sample_weights: (N,) weights of a sampler with replacement instead of shuffling.
        channels_last: run the convolutions in channels-last memory format.
    """

    def __init__(
        self,
        model: nn.Module,
        frames: Dataset,
        cfg: ClassifierTrainConfig,
        evaluate: Callable[[nn.Module], dict],
        pos_weight: float = 1.0,
        sample_weights: np.ndarray | None = None,
        channels_last: bool = False,
    ) -> None:
        self.cfg, self.evaluate, self.channels_last = cfg, evaluate, channels_last
        self.accelerator = make_accelerator(
            cfg.mixed_precision, cfg.gradient_accumulation, cpu=cfg.device == "cpu"
        )
        device = self.accelerator.device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(device, memory_format=self.memory_format)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        loader = self._loader(frames, sample_weights)
        self.total_steps = cfg.total_steps(len(loader) // cfg.gradient_accumulation)
        self.pos_weight = pos_weight
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # OneCycleLR divides by the length of its warm-up: give very short runs at least 10 steps.
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(self.total_steps, 10), pct_start=0.2
        )
        self.model, self.optimizer, self.schedule = self.accelerator.prepare(
            model, optimizer, schedule
        )
        # prepare() makes the model's forward autocast itself; `step` autocasts explicitly, and
        # `evaluate` must measure at the precision the classifier will be used at (the view
        # classifier: fp32), so the model keeps its own forward
        self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        self.batches = LoaderBatches(loader, self.generator)
        self.history: list[dict] = []
        self.epoch_started = time.monotonic()

    @property
    def epochs(self) -> int:
        """Epochs the run trains."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.batches) // self.cfg.gradient_accumulation, 1)

    def _loader(self, frames: Dataset, sample_weights: np.ndarray | None) -> DataLoader:
        per_process, uneven = divmod(self.cfg.micro_batch_size, self.accelerator.num_processes)
        if per_process == 0 or uneven:
            raise OptionError(
                f"batch size {self.cfg.batch_size} / accumulation "
                f"{self.cfg.gradient_accumulation} does not split into "
                f"{self.accelerator.num_processes} processes"
            )
        sampler = None
        if sample_weights is not None:
            sampler = WeightedRandomSampler(
                sample_weights.tolist(), len(sample_weights), True, generator=self.generator
            )
        return self.accelerator.prepare(DataLoader(
            frames, batch_size=per_process, shuffle=sampler is None, sampler=sampler,
            generator=self.generator, num_workers=self.cfg.workers,
            persistent_workers=self.cfg.workers > 0, drop_last=len(frames) > per_process,
        ))  # fmt: skip

    def run(
        self,
        out: Path,
        progress: Progress | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        desc: str = "train",
        resume: bool = False,
        stop_after: int | None = None,
    ) -> list[dict]:
        """Trains all steps (deterministic kernels), from the latest checkpoint in `out` with
        `resume`, stopping with a checkpoint after `stop_after` steps, rounded up to whole
        epochs, when given (as if interrupted); returns the epoch records.

        Checkpoints fall on epoch boundaries: there a resumed run continues exactly whatever
        the workers and processes (mid-epoch, accelerate's sharded loader has already read,
        and augmented with the global RNG, one batch ahead of the checkpoint)."""
        out.mkdir(parents=True, exist_ok=True)
        checkpointer = Checkpointer(
            out / CHECKPOINTS_DIR, self.accelerator, models={"model": self.model},
            optimizers={"adamw": self.optimizer}, schedules={"one_cycle": self.schedule},
            keep=self.cfg.keep_checkpoints,
        )  # fmt: skip
        every = self.cfg.checkpoint_every
        settings = self.cfg
        if every is not None:  # on epoch boundaries
            whole = math.ceil(every / self.steps_per_epoch) * self.steps_per_epoch
            settings = self.cfg.model_copy(update={"checkpoint_every": whole})
        loop = TrainLoop(
            self.accelerator, self.step, settings, self.total_steps, log_file=out / LOG_FILE,
            checkpointer=checkpointer if every is not None or stop_after else None,
            extra_state=self.state, learning_rate=lambda: self.schedule.get_last_lr()[0],
            steps_per_epoch=self.steps_per_epoch, end_of_epoch=self.end_of_epoch,
            on_log=_epoch_records(on_epoch), progress=progress, desc=desc,
        )  # fmt: skip
        start = 0
        if resume:
            state = loop.restore(checkpointer.latest())
            self.batches.restore(state["batches"])
            self.history, start = state["history"], state["step"]
        if stop_after is not None:
            stop_after = math.ceil(stop_after / self.steps_per_epoch) * self.steps_per_epoch
        with deterministic_algorithms():
            loop.run(start, stop_after)
        return self.history

    def state(self) -> dict:
        """JSON state of a checkpoint: the batch stream and the epoch records so far."""
        return {"batches": self.batches.state(), "history": self.history}

    def step(self, step: int) -> dict:
        """One optimiser step over `gradient_accumulation` micro-batches; {"loss": mean BCE}."""
        self.model.train()
        total = 0.0
        for _ in range(self.cfg.gradient_accumulation):
            images, targets = self.batches.next()
            with self.accelerator.accumulate(self.model):
                images = images.to(memory_format=self.memory_format)
                with self.accelerator.autocast():
                    logits = self.model(images)
                logits = logits[:, 0] if targets.dim() == 1 else logits
                loss = self.loss(logits.float(), targets.float())
                self.accelerator.backward(loss)
                self.optimizer.step()
                if self.accelerator.sync_gradients:
                    self.schedule.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach().item() / self.cfg.gradient_accumulation
        return {"loss": total}

    def end_of_epoch(self, epoch: int, means: dict) -> EpochEnd:
        """Measures the holdout; the epoch's record goes to the log and the history."""
        record = {"epoch": epoch, "train_loss": means.get("loss", math.nan),
                  "seconds": round(time.monotonic() - self.epoch_started, 2),
                  "holdout": self.evaluate(self.accelerator.unwrap_model(self.model))}  # fmt: skip
        self.history.append(record)
        self.epoch_started = time.monotonic()
        return EpochEnd(record)

    def unwrapped(self) -> nn.Module:
        """The trained classifier (in eval mode)."""
        return self.accelerator.unwrap_model(self.model).eval()


def _epoch_records(on_epoch: Callable[[dict], None] | None) -> Callable[[dict], None] | None:
    if on_epoch is None:
        return None
    return lambda record: on_epoch(record) if "holdout" in record else None


def predict_probabilities(
    model: nn.Module,
    frames: Dataset,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 64,
    workers: int = 0,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N,) float64 sigmoid of the first logit of each (1, 128, 128) frame served by `frames`,
    under `precision` autocast ("auto", "fp32", "bf16")."""
    logits = predict_logits(
        model, frames, device, batch_size, workers=workers,
        context=lambda: autocast(torch.device(device), precision), channels_last=channels_last,
        progress=progress,
    )  # fmt: skip
    return torch.sigmoid(torch.from_numpy(logits[:, 0])).numpy()
