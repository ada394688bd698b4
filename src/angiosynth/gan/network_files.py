"""A trained network in a run directory: RUN/<subdir>/model.safetensors + config.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from angiosynth.runfiles import MODEL_CONFIG_FILE, MODEL_FILE


def load_network(
    run: Path,
    subdir: str,
    build: Callable[[dict], nn.Module],
    error: type[Exception],
    noun: str,
    command: str,
) -> tuple[nn.Module, dict]:
    """The network of a run (RUN or RUN/`subdir`), in eval mode, and its config.json.

    Args:
        build: config.json's content -> the untrained network.
        error: raised, with one line naming the folder, when there is no usable network.
        noun, command: what the network is and the command that trains it (for the message).
    """
    run = Path(run)
    folder = run if (run / MODEL_CONFIG_FILE).is_file() else run / subdir
    if not (folder / MODEL_FILE).is_file() or not (folder / MODEL_CONFIG_FILE).is_file():
        raise error(
            f"{run}: no trained {noun} ({subdir}/{MODEL_FILE}); train one with `{command}` "
            "(an interrupted run resumes with --resume)"
        )
    try:
        settings = json.loads((folder / MODEL_CONFIG_FILE).read_text())
        network = build(settings)
        network.load_state_dict(load_file(folder / MODEL_FILE))
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise error(f"{folder}: unusable {noun} ({detail})") from err
    return network.eval(), settings
