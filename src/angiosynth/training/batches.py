"""Batches by step: what step i trains on, so that a resumed run trains on what an
uninterrupted one would.

`step_generator(seed, *parts)` is a generator seeded by (seed, step, micro-batch, process,
...), not by a running random state. Two ways to batch, one per kind of input:

- `shuffled_positions` (latents, images read by position): the positions of step i follow
  from (seed, epoch) alone, each process taking its slice of the global batch.
- `LoaderBatches` (a DataLoader with augmentation, workers or a weighted sampler): the batches
  of a DataLoader as one stream; a checkpoint stores the shuffling generator's state at the
  start of the current epoch and how many batches of it were taken, and a resumed stream
  skips those batches without reading them.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import torch
from accelerate import skip_first_batches


def step_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator seeded by (seed, parts...), e.g. (seed, step, micro-batch, process)."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def shuffled_positions(
    seed: int, step: int, micro: int, n: int, steps_per_epoch: int, batch: int, micro_size: int
) -> np.ndarray:
    """Positions (micro_size,) of micro-batch `micro` of global step `step`: epoch
    step // steps_per_epoch is one permutation of n drawn from (seed, epoch); batches wrap
    around its end."""
    epoch, index = divmod(step, steps_per_epoch)
    order = torch.randperm(n, generator=step_generator(seed, epoch, -2)).numpy()
    start = index * batch + micro * micro_size
    return np.take(order, np.arange(start, start + micro_size), mode="wrap")


class LoaderBatches:
    """The batches of `loader`, epoch after epoch, resumable at any step.

    Args:
        loader: the DataLoader (prepared by accelerate or not); its shuffling must draw from
            `generator` alone (augmentation draws from the global RNG, which checkpoints keep).
        generator: the loader's generator.
    """

    def __init__(self, loader, generator: torch.Generator) -> None:
        self.loader, self.generator = loader, generator
        self.epoch_start = generator.get_state()
        self.taken = 0
        self._batches = None

    def __len__(self) -> int:
        return len(self.loader)

    def next(self):
        """The next batch (a new epoch begins after the last batch of the previous one)."""
        if self._batches is not None:
            batch = next(self._batches, None)
            if batch is not None:
                self.taken += 1
                return batch
        self.epoch_start, self.taken = self.generator.get_state(), 0
        self._batches = iter(self.loader)
        return self.next()

    def state(self) -> dict:
        """JSON state for a checkpoint: the generator's state at the start of the current
        epoch (base64) and how many of its batches were taken."""
        start = base64.b64encode(self.epoch_start.numpy().tobytes()).decode()
        return {"epoch_start": start, "taken": self.taken}

    def restore(self, state: dict) -> None:
        """Continues after `state["taken"]` batches of the epoch that began at
        `state["epoch_start"]`."""
        raw = np.frombuffer(base64.b64decode(state["epoch_start"]), dtype=np.uint8)
        self.epoch_start, self.taken = torch.from_numpy(raw.copy()), int(state["taken"])
        self.generator.set_state(self.epoch_start)
        loader = skip_first_batches(self.loader, self.taken) if self.taken else self.loader
        self._batches = iter(loader)
