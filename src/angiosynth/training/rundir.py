"""Run directories of the trainers: starting one, replacing one, resuming one.

A run directory holds RUN/config.yaml (the resolved configuration), RUN/log.jsonl,
RUN/checkpoints/ and the trainer's outputs. A new run refuses a directory that holds a run unless
asked to replace it; a resumed run must have the configuration it started with, except the
settings of `TrainLoopConfig.RESUMABLE` (how long it trains, how often it saves and logs).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from angiosynth.config import TrainLoopConfig
from angiosynth.errors import OutputExistsError
from angiosynth.runfiles import CONFIG_FILE, LOG_FILE, write_yaml_atomic
from angiosynth.training.checkpoint import CHECKPOINTS_DIR, ResumeError


def check_out(out: Path, resume: bool, overwrite: bool, resolved: dict, section: str) -> None:
    """Checks that `out` may be written.

    Args:
        out: the run directory.
        resume: the run continues from its latest checkpoint.
        overwrite: an existing run may be replaced.
        resolved: the configuration the run would write to RUN/config.yaml.
        section: the key of the trainer's loop settings in `resolved` (e.g. "train_ldm").

    Raises:
        OutputExistsError: `out` holds a run, and neither `resume` nor `overwrite` is given.
        ResumeError: nothing to resume, or `resolved` differs from the run's configuration
            beyond the resumable settings.
    """
    config = Path(out) / CONFIG_FILE
    if not resume:
        if config.exists() and not overwrite:
            raise OutputExistsError(f"{out}: holds a run already; use --resume or --overwrite")
        return
    if not config.exists():
        raise ResumeError(f"{out}: no run to resume (missing {CONFIG_FILE})")
    saved = yaml.safe_load(config.read_text())
    for key in sorted(set(saved) | set(resolved)):
        a, b = saved.get(key), resolved.get(key)
        if key == section and isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k not in TrainLoopConfig.RESUMABLE}
            b = {k: v for k, v in b.items() if k not in TrainLoopConfig.RESUMABLE}
        if a != b:
            raise ResumeError(f"{out}: cannot resume with a different {key} than the run's")


def start_run_dir(out: Path, resolved: dict, fresh: bool, outputs: tuple[str, ...] = ()) -> None:
    """Writes RUN/config.yaml; a fresh run first removes the checkpoints, the log and the
    trainer's `outputs` (folders) of a run it replaces. Main process only."""
    out = Path(out)
    if fresh and out.exists():
        for name in (CHECKPOINTS_DIR, *outputs):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / LOG_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml_atomic(out / CONFIG_FILE, resolved)
