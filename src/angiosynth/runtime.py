"""Where and how models run: device, numeric precision, determinism.

Every trainer, sampler, evaluation and command that runs a model takes its device and precision
from here, so "auto" means the same thing everywhere (it sits below every layer that runs a
model, so that training, diffusion and evaluation share it without importing each other):

- `resolve_device("auto")`: CUDA when available, else the CPU.
- `resolve_precision("auto", device)`: bf16 autocast on CUDA devices that support it and on CPUs
  with AMX tiles (bf16 matrix units), else fp32. `resolve_mixed_precision` is the same choice in
  accelerate's vocabulary ("bf16" / "no") for the trainers that run under `accelerate launch`.
- `deterministic_algorithms()`: deterministic kernels (bit-identical reruns on a CPU).

Like `config`, this module imports nothing from angiosynth but `errors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from angiosynth.errors import OptionError

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """The device named: "auto" is CUDA when available, else CPU; "cuda" must be available.

    Raises:
        OptionError: an unknown device, or CUDA on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise OptionError(f"--device {name}: unknown device") from err


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast precision, "fp32" or "bf16"; "auto" is bf16 on CUDA devices that support it
    and on CPUs with AMX tiles, else fp32.

    Raises:
        OptionError: a precision other than auto, fp32 or bf16.
    """
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return "bf16" if device.type == "cpu" and amx() else "fp32"


def resolve_mixed_precision(name: str) -> str:
    """accelerate's `mixed_precision` for a config value: "auto" is bf16 where `resolve_precision`
    finds bf16 fast (CUDA with bf16, CPUs with AMX), else "no". On other CPUs bf16 autocast
    ranged from about 10x slower than fp32 (no AVX512-BF16) to 1.7x faster (ResNet-18 on an
    AVX512-BF16 EPYC, where the tiny UNet's step was still 1.2x slower), so "auto" keeps fp32
    there and bf16 must be asked for."""
    if name != "auto":
        return name
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return "bf16" if resolve_precision("auto", device) == "bf16" else "no"


def autocast(device: torch.device, precision: str):
    """torch.autocast to bf16 when `resolve_precision(precision, device)` is bf16, else a no-op
    context (fp32)."""
    enabled = resolve_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Deterministic kernels inside the block (bit-identical reruns on CPU; on CUDA a warning
    names any op without a deterministic kernel), restoring the previous settings after."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]
