"""Checkpoints: everything a run needs to continue exactly, each part stored by name.

A checkpoint is a folder, written under a temporary name and renamed into place when complete
(an interrupted save leaves the previous checkpoints intact); the last `keep` are kept::

    RUN/checkpoints/checkpoint-0000200/
      state.json              step, the trainer's extra state (JSON), the EMAs' counters
      models/NAME/            each model: diffusers' save_pretrained for diffusers models
                              (loadable with `from_pretrained`), else model.safetensors of its
                              state dict; a container's diffusers children get their own folder
      ema/NAME/               each EMA's weights, written as its model (loadable the same way)
      optimizers/NAME.pt      optimiser state dicts
      schedules/NAME.pt       LR-schedule state dicts
      rng/process-K.pt        torch / CUDA / numpy / Python RNG states of process K

Weights are safetensors, restored with `load_state_dict` by parameter name, so a change of
parameter order cannot misload them and a file that does not fit fails loudly.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from angiosynth.errors import AngiosynthError
from angiosynth.runfiles import MODEL_FILE, save_tensors_atomic, write_json_atomic

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.json"
#: Weight files of diffusers' save_pretrained (safetensors).
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


class ResumeError(AngiosynthError, ValueError):
    """A run cannot be resumed (no checkpoint, another configuration, or an unreadable one)."""


@dataclass
class Checkpointer:
    """Saves and restores the named parts of one run.

    Attributes:
        root: RUN/checkpoints.
        accelerator: the run's accelerate.Accelerator (main process writes; all wait).
        models: name -> module (as prepared by accelerate; unwrapped before saving).
        optimizers, schedules: name -> optimiser / LR schedule.
        emas: name -> (diffusers EMAModel, the module whose parameters it averages).
        keep: how many checkpoints to keep.
    """

    root: Path
    accelerator: object
    models: dict[str, nn.Module] = field(default_factory=dict)
    optimizers: dict = field(default_factory=dict)
    schedules: dict = field(default_factory=dict)
    emas: dict = field(default_factory=dict)
    keep: int = 2

    def save(self, step: int, extra: dict | None = None) -> Path:
        """Writes checkpoint-<step> (see the module docstring) and deletes all but the last
        `keep`; returns its path. Every process calls it (each writes its RNG states)."""
        final = self.root / f"checkpoint-{step:07d}"
        tmp = self.root / f".tmp-checkpoint-{step:07d}"
        main = self.accelerator.is_main_process
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        _save_rng(tmp / "rng" / f"process-{self.accelerator.process_index}.pt")
        if main:
            self._save_parts(tmp, step, extra or {})
        self.accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.checkpoints()[: -self.keep]:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()
        return final

    def _save_parts(self, folder: Path, step: int, extra: dict) -> None:
        for name, model in self.models.items():
            save_module(self.accelerator.unwrap_model(model), folder / "models" / name)
        for name, (ema, model) in self.emas.items():
            with ema_weights(ema, self.accelerator.unwrap_model(model)) as averaged:
                save_module(averaged, folder / "ema" / name)
        for kind, parts in (("optimizers", self.optimizers), ("schedules", self.schedules)):
            (folder / kind).mkdir(exist_ok=True)
            for name, part in parts.items():
                torch.save(part.state_dict(), folder / kind / f"{name}.pt")
        emas = {name: _ema_counters(ema) for name, (ema, _) in self.emas.items()}
        write_json_atomic(folder / STATE_FILE, {"step": step, "extra": extra, "emas": emas})

    def checkpoints(self) -> list[Path]:
        """The complete checkpoints, oldest first."""
        return sorted(self.root.glob("checkpoint-*"))

    def latest(self) -> Path:
        """The newest checkpoint.

        Raises:
            ResumeError: there is none.
        """
        found = self.checkpoints()
        if not found:
            raise ResumeError(f"{self.root.parent}: no checkpoint to resume from")
        return found[-1]

    def load(self, checkpoint: Path) -> dict:
        """Restores every named part and this process's RNG states from `checkpoint`; returns
        {"step", "extra"}.

        Raises:
            ResumeError: a part is missing or does not fit (names the file).
        """
        checkpoint = Path(checkpoint)
        try:
            state = json.loads((checkpoint / STATE_FILE).read_text())
            if "extra" not in state:
                raise ResumeError(
                    f"{checkpoint}: written by an angiosynth before named checkpoints; "
                    "train the run again with --overwrite"
                )
            for name, model in self.models.items():
                load_module(self.accelerator.unwrap_model(model), checkpoint / "models" / name)
            for name, (ema, model) in self.emas.items():
                _load_ema(ema, self.accelerator.unwrap_model(model), checkpoint, name, state)
            for kind, parts in (("optimizers", self.optimizers), ("schedules", self.schedules)):
                for name, part in parts.items():
                    part.load_state_dict(torch.load(checkpoint / kind / f"{name}.pt"))
            _load_rng(checkpoint / "rng" / f"process-{self.accelerator.process_index}.pt")
        except ResumeError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ResumeError(f"{checkpoint}: cannot be restored ({message})") from err
        return {"step": int(state["step"]), "extra": state.get("extra", {})}


def save_module(module: nn.Module, folder: Path) -> None:
    """Writes a module's weights by name into `folder`: diffusers models through their
    `save_pretrained`; other modules as MODEL_FILE, each diffusers child in its own subfolder
    (so a Denoiser's UNet is loadable with `UNet2DConditionModel.from_pretrained`)."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "save_pretrained"):
        module.save_pretrained(folder)
        return
    rest = dict(module.state_dict())
    for name, child in module.named_children():
        if hasattr(child, "save_pretrained"):
            child.save_pretrained(folder / name)
            rest = {k: v for k, v in rest.items() if not k.startswith(f"{name}.")}
    if rest:
        save_tensors_atomic(rest, folder / MODEL_FILE, metadata={"format": "pt"})


def load_module(module: nn.Module, folder: Path) -> None:
    """Loads weights written by `save_module` into `module` (strictly, by name)."""
    module.load_state_dict(_read_module(module, folder))


def _read_module(module: nn.Module, folder: Path) -> dict[str, torch.Tensor]:
    if hasattr(module, "save_pretrained"):
        return load_file(folder / DIFFUSERS_WEIGHTS)
    tensors = load_file(folder / MODEL_FILE) if (folder / MODEL_FILE).is_file() else {}
    for name, child in module.named_children():
        if hasattr(child, "save_pretrained"):
            child_tensors = load_file(folder / name / DIFFUSERS_WEIGHTS)
            tensors.update({f"{name}.{k}": v for k, v in child_tensors.items()})
    return tensors


class ema_weights:
    """Inside the block, `model` holds the EMA's averaged weights; after it, its own again
    (diffusers' store / copy_to / restore)."""

    def __init__(self, ema, model: nn.Module) -> None:
        self.ema, self.model = ema, model

    def __enter__(self) -> nn.Module:
        self.ema.store(self.model.parameters())
        self.ema.copy_to(self.model.parameters())
        return self.model

    def __exit__(self, *exc) -> None:
        self.ema.restore(self.model.parameters())


def _load_ema(ema, model: nn.Module, checkpoint: Path, name: str, state: dict) -> None:
    """Sets the EMA's averages from ema/NAME (read into `model` by name) and its counters."""
    averaged = _read_module(model, checkpoint / "ema" / name)
    named = dict(model.named_parameters())
    missing = sorted(set(named) - set(averaged))
    if missing:
        raise KeyError(f"ema/{name} lacks {missing[0]}")
    by_name = {id(p): averaged[n] for n, p in named.items()}
    for shadow, param in zip(ema.shadow_params, model.parameters(), strict=True):
        shadow.data.copy_(by_name[id(param)])
    for key, value in state["emas"][name].items():
        setattr(ema, key, value)


def _ema_counters(ema) -> dict:
    """The EMA's scalar state (everything but its averaged tensors)."""
    return {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}


def _save_rng(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global state set_seed seeds
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(states, path)


def _load_rng(path: Path) -> None:
    states = torch.load(path, weights_only=False)  # written by _save_rng of this run
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["python"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
