"""The step loop every trainer runs on, over accelerate.

A trainer supplies `step(i) -> {"loss": ..., ...}`: one optimiser step (with its accumulation
micro-batches) drawing the batch of step i. The loop calls it for i = start .. stop - 1 and

- reduces the returned losses across processes (mean) every step;
- every `log_every` steps appends one record to RUN/log.jsonl: the step, the mean of each loss
  over the window, the learning rate and the speed (main process only);
- every `checkpoint_every` steps, and when it stops, saves a checkpoint (`Checkpointer`) with
  the trainer's extra state;
- after every `steps_per_epoch` steps calls `end_of_epoch(epoch, means)` with the epoch's mean
  losses; it may return a record for the log (validation) and ask the loop to stop (early
  stopping);
- shows a progress bar on the main process.

Adding a trainer means writing its step function and its config (a `config.TrainLoopConfig`);
the loop, the checkpoints, resume and logging come from here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import GradientAccumulationPlugin

from angiosynth.config import TrainLoopConfig
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import append_jsonl
from angiosynth.runtime import resolve_mixed_precision
from angiosynth.training.checkpoint import Checkpointer

StepFn = Callable[[int], dict]


@dataclass
class EpochEnd:
    """What `end_of_epoch` returns: a log record (or None) and whether training should stop."""

    record: dict | None = None
    stop: bool = False


@dataclass
class TrainLoop:
    """Runs a step function for the steps of one run (module docstring).

    Attributes:
        accelerator: the run's accelerate.Accelerator.
        step: the trainer's step function.
        settings: the loop settings of the trainer's config (log_every, checkpoint_every).
        total_steps: the run's length in optimiser steps.
        log_file: RUN/log.jsonl, or None for no log.
        checkpointer: saves checkpoints, or None for none.
        extra_state: returns the trainer's JSON state stored with each checkpoint.
        learning_rate: returns the current learning rate for the log.
        steps_per_epoch, end_of_epoch: the epoch hook (validation, early stopping).
        on_log: called with each record written to the log (e.g. to print it).
        progress, desc: the progress bar and its label.
    """

    accelerator: object
    step: StepFn
    settings: TrainLoopConfig
    total_steps: int
    log_file: object = None
    checkpointer: Checkpointer | None = None
    extra_state: Callable[[], dict] = dict
    learning_rate: Callable[[], float] | None = None
    steps_per_epoch: int | None = None
    end_of_epoch: Callable[[int, dict], EpochEnd] | None = None
    on_log: Callable[[dict], None] | None = None
    progress: Progress | None = None
    desc: str = "train"
    last: dict = field(default_factory=dict)
    _epoch: list[dict] = field(default_factory=list)

    def run(self, start: int = 0, stop_after: int | None = None) -> int:
        """Trains steps `start` .. min(stop_after, total_steps) - 1; returns the step reached
        (earlier when `end_of_epoch` stops the run). `last` holds the last step's losses."""
        stop = min(stop_after if stop_after is not None else self.total_steps, self.total_steps)
        main = self.accelerator.is_main_process
        steps = range(start, stop)
        window: list[dict] = []
        started = time.monotonic()
        reached = start
        for i in tracked(steps, len(steps), self.desc, self.progress if main else None):
            self.last = self._reduced(self.step(i))
            window.append(self.last)
            self._epoch.append(self.last)
            reached = i + 1
            if reached % self.settings.log_every == 0 or reached == stop:
                self._log(reached, window, started)
                window, started = [], time.monotonic()
            ended = self._epoch_end(reached)
            if self._checkpoint_due(reached, stop) or ended:
                self.save(reached)
            if ended:
                break
        return reached

    def save(self, step: int) -> None:
        """A checkpoint of `step` with the trainer's extra state (when checkpointing)."""
        if self.checkpointer is not None:
            loop = {"epoch_losses": self._epoch}
            self.checkpointer.save(step, {**self.extra_state(), "loop": loop})

    def restore(self, checkpoint) -> dict:
        """Restores the checkpointer's parts and the loop's own state from `checkpoint`;
        returns the trainer's extra state, with the step to continue from under "step"."""
        state = self.checkpointer.load(checkpoint)
        extra = dict(state["extra"])
        self._epoch = extra.pop("loop", {}).get("epoch_losses", [])
        return {**extra, "step": state["step"]}

    def _checkpoint_due(self, step: int, stop: int) -> bool:
        every = self.settings.checkpoint_every
        if self.checkpointer is None:
            return False
        return (every is not None and step % every == 0) or (
            step == stop and (every is not None or stop < self.total_steps)
        )

    def _epoch_end(self, step: int) -> bool:
        """Runs the epoch hook after a whole epoch; True when it asks to stop."""
        if self.end_of_epoch is None or not self.steps_per_epoch:
            return False
        if step % self.steps_per_epoch and step != self.total_steps:
            return False
        result = self.end_of_epoch(math.ceil(step / self.steps_per_epoch), _means(self._epoch))
        self._epoch = []
        if result.record is not None:
            self.write_log({"step": step, **result.record})
        return result.stop

    def _reduced(self, losses: dict) -> dict:
        """The step's losses averaged over processes, as floats."""
        names = sorted(losses)
        if not names:
            return {}
        values = torch.tensor([float(losses[n]) for n in names], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction="mean")
        return dict(zip(names, values.tolist(), strict=True))

    def _log(self, step: int, window: list[dict], started: float) -> None:
        record = {"step": step, **_means(window)}
        if self.learning_rate is not None:
            record["lr"] = self.learning_rate()
        record["steps_per_s"] = round(len(window) / max(time.monotonic() - started, 1e-9), 3)
        self.write_log(record)

    def write_log(self, record: dict) -> None:
        """Appends `record` to the log (main process) and passes it to `on_log`."""
        if not self.accelerator.is_main_process:
            return
        if self.log_file is not None:
            append_jsonl(self.log_file, record)
        if self.on_log is not None:
            self.on_log(record)


def _means(records: list[dict]) -> dict:
    """Each loss's mean over a list of per-step loss dicts."""
    if not records:
        return {}
    return {name: float(np.mean([r[name] for r in records])) for name in records[-1]}


def make_accelerator(mixed_precision: str, gradient_accumulation: int = 1, cpu: bool = False):
    """The accelerate.Accelerator of a training run: `mixed_precision` as in the configs
    ("auto" through `runtime.resolve_mixed_precision`, "fp32" meaning "no"); gradient accumulation
    counted in micro-batches drawn by step, not by a DataLoader's end; LR schedules stepped
    once per optimiser step, whatever the number of processes; `cpu` forces the CPU."""
    precision = resolve_mixed_precision(mixed_precision)
    precision = "no" if precision == "fp32" else precision
    state = AcceleratorState._shared_state and AcceleratorState()
    if state and (state.mixed_precision != precision or (cpu and state.device.type != "cpu")):
        # one process training several models in turn (a notebook, the test suite): accelerate
        # fixes the precision at the first Accelerator; the distributed set-up is kept
        AcceleratorState._reset_state()
    accumulation = GradientAccumulationPlugin(
        num_steps=gradient_accumulation, sync_with_dataloader=False
    )
    return Accelerator(
        mixed_precision=precision,
        gradient_accumulation_plugin=accumulation,
        step_scheduler_with_optimizer=False,
        cpu=cpu,
    )
