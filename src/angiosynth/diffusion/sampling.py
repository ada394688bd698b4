"""Sampling runs: which images to draw (designs), drawing them, and writing them to a folder.

An output folder holds::

    DIR/
      png8/<name>.png     8-bit grayscale images
      png16/<name>.png    16-bit grayscale images (the full precision of the decoder)
      dicom/<name>.dcm    with --dicom: Secondary Capture, marked synthetic (dicom.synthetic)
      samples.parquet     one row per image: file, file16, prompt, condition, seed, sampler,
                          steps, guidance, model_hash, batch, index
      sample.json         the run's settings (model, sampler, steps, guidance, seed, processes)
      log.jsonl           one line per batch drawn (process, images, seconds)

Each image's seed is the run's seed + its index, so images repeat exactly whatever the batch
size or the number of processes (`accelerate launch` shards the list over processes).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from PIL import Image

from angiosynth.conditions import CONDITIONS, condition_prompt, parse_prompt
from angiosynth.diffusion.pipeline import LatentDiffusion
from angiosynth.errors import OptionError
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import (
    LOG_FILE,
    append_jsonl,
    atomic_path,
    write_json_atomic,
    write_table_atomic,
)

SAMPLES_FILE = "samples.parquet"
SETTINGS_FILE = "sample.json"
DESIGNS = ("reader-study", "conditions")
#: The paper's reader-study sampling: 10 batches x 40 images, 10 per condition per batch.
READER_STUDY_BATCHES, READER_STUDY_PER_CONDITION = 10, 10


@dataclass(frozen=True)
class SampleRequest:
    """One image to draw."""

    index: int
    prompt: str
    condition: str | None
    seed: int
    batch: int | None = None


def plan_samples(
    *,
    seed: int,
    n: int | None = None,
    condition: str | None = None,
    prompt: str | None = None,
    design: str | None = None,
) -> list[SampleRequest]:
    """The images of a run: `n` of one condition or prompt, or a design.

    Designs: "reader-study" (10 batches x 40 images, 10 per condition per batch, in a seeded
    random order within each batch; `n` must be None) and "conditions" (`n` per condition).

    Raises:
        OptionError: not exactly one of condition, prompt and design, an unknown condition or
            design, or a bad `n`.
    """
    if sum(x is not None for x in (condition, prompt, design)) != 1:
        raise OptionError("give exactly one of --condition, --prompt and --design")
    if design == "reader-study":
        if n is not None:
            raise OptionError("--design reader-study draws 400 images; leave out --n")
        return _reader_study(seed)
    n = 1 if n is None else n
    if n < 1:
        raise OptionError(f"--n must be >= 1, got {n}")
    if design == "conditions":
        prompts = [(condition_prompt(c), c) for c in CONDITIONS for _ in range(n)]
    elif design is not None:
        raise OptionError(f"unknown design {design!r}; choose one of {', '.join(DESIGNS)}")
    elif condition not in (None, *CONDITIONS):
        raise OptionError(
            f"--condition: unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}"
        )
    elif condition is not None:
        prompts = [(condition_prompt(condition), condition)] * n
    else:
        prompts = [(prompt, _condition_of(prompt))] * n
    return [SampleRequest(i, p, c, seed + i) for i, (p, c) in enumerate(prompts)]


def _condition_of(prompt: str) -> str | None:
    view = parse_prompt(prompt)
    return None if view is None else view.view


def _reader_study(seed: int) -> list[SampleRequest]:
    rng = np.random.default_rng(seed)
    requests = []
    for batch in range(READER_STUDY_BATCHES):
        conditions = np.repeat(CONDITIONS, READER_STUDY_PER_CONDITION)
        for c in rng.permutation(conditions):
            i = len(requests)
            requests.append(SampleRequest(i, condition_prompt(str(c)), str(c), seed + i, batch))
    return requests


def _name(request: SampleRequest) -> str:
    label = (request.condition or "prompt").replace(" ", "")
    return f"{request.index:05d}_{label}"


def sample_to_directory(
    model: LatentDiffusion,
    requests: list[SampleRequest],
    out: Path,
    *,
    sampler: str,
    steps: int,
    guidance: float,
    batch_size: int = 16,
    dicom: bool = False,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Draws `requests` (this process's share under `accelerate launch`) and writes `out`.

    Returns:
        The samples table (on every process, after all processes have written).

    Raises:
        UnknownWordError, OptionError: a prompt the model cannot encode, or `dicom` with a
            prompt that does not name circulation, plane and angles.
    """
    out = Path(out)
    model.check_prompts([r.prompt for r in requests])
    if dicom:
        _check_dicom(requests)
    state = PartialState()
    for sub in ("png8", "png16", *(("dicom",) if dicom else ())):
        (out / sub).mkdir(parents=True, exist_ok=True)
    settings = {"sampler": sampler, "steps": steps, "guidance": guidance,
                "model_hash": model.model_hash}  # fmt: skip
    if state.is_main_process:
        (out / LOG_FILE).unlink(missing_ok=True)
        write_json_atomic(out / SETTINGS_FILE, {**settings, "images": len(requests),
                          "processes": state.num_processes, "dicom": dicom})  # fmt: skip
    state.wait_for_everyone()
    rows = []
    with state.split_between_processes(requests) as mine:
        batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
        for batch in tracked(batches, len(batches), "sample", progress):
            start = time.monotonic()
            images = model.sample([r.prompt for r in batch], [r.seed for r in batch],
                                  sampler, steps, guidance)  # fmt: skip
            for request, image in zip(batch, images[:, 0], strict=True):
                rows.append(_write_sample(out, request, image, settings, dicom))
            append_jsonl(out / LOG_FILE, {"process": state.process_index, "images": len(batch),
                         "first_index": batch[0].index,
                         "seconds": round(time.monotonic() - start, 3)})  # fmt: skip
    part = out / f".samples-{state.process_index}.parquet"
    pd.DataFrame(rows, columns=_COLUMNS).to_parquet(part, index=False)
    state.wait_for_everyone()
    table = _merge_parts(out, state.num_processes)
    state.wait_for_everyone()
    if state.is_main_process:
        for i in range(state.num_processes):
            (out / f".samples-{i}.parquet").unlink(missing_ok=True)
    return table


_COLUMNS = ["file", "file16", "prompt", "condition", "seed", "sampler", "steps", "guidance",
            "model_hash", "batch", "index"]  # fmt: skip


def _check_dicom(requests: list[SampleRequest]) -> None:
    for r in requests:
        if parse_prompt(r.prompt) is None:
            raise OptionError(
                f"--dicom needs prompts that name circulation, plane and angles; got {r.prompt!r}"
            )


def _write_sample(out: Path, request: SampleRequest, image: torch.Tensor, settings, dicom):
    name = _name(request)
    unit = image.numpy()
    image8 = np.round(unit * 255).astype(np.uint8)
    image16 = np.round(unit * 65535).astype(np.uint16)
    _save_png(out / "png8" / f"{name}.png", image8)
    _save_png(out / "png16" / f"{name}.png", image16)
    if dicom:
        _save_dicom(out / "dicom" / f"{name}.dcm", image16, request, settings)
    record = asdict(request)
    return {"file": f"png8/{name}.png", "file16": f"png16/{name}.png", **settings, **record}


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _save_dicom(path: Path, image16: np.ndarray, request: SampleRequest, settings) -> None:
    from angiosynth.dicom.synthetic import SyntheticImageInfo, write_synthetic_dicom

    view = parse_prompt(request.prompt)
    info = SyntheticImageInfo(
        prompt=request.prompt, circulation=view.circulation, plane=view.plane,
        primary_angle=view.primary_angle, secondary_angle=view.secondary_angle,
        seed=request.seed, sampler=settings["sampler"], steps=settings["steps"],
        guidance=settings["guidance"], model_hash=settings["model_hash"], index=request.index,
    )  # fmt: skip
    write_synthetic_dicom(path, image16, info)


def _merge_parts(out: Path, processes: int) -> pd.DataFrame:
    parts = [pd.read_parquet(out / f".samples-{i}.parquet") for i in range(processes)]
    table = pd.concat(parts, ignore_index=True).sort_values("index").reset_index(drop=True)
    if PartialState().is_main_process:
        write_table_atomic(table, out / SAMPLES_FILE)
    return table
