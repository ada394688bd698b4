"""Training a translation method (CycleGAN, AttentionGAN, CUT, CAS-GAN): `angiosynth train
translate`.

Each step draws a batch of random crops of non-contrast frames x and, independently, of
angiograms y (unpaired), takes one generator step (the discriminators' weights frozen), then
one discriminator step on the real images and on fakes drawn through the image pool. Adam with
betas (0.5, 0.999) for both; the learning rate is constant, then decays linearly to 0 over the
last `decay_share` of the steps. Crops, flips and pool draws come from generators seeded by
(seed, step, process), so a resumed run trains on what an uninterrupted one would; checkpoints
(`training.checkpoint`) hold the networks, optimisers, LR schedules, pools and RNG states.

A warning is logged (and printed) when every discriminator's loss stays below
`collapse_threshold` for `collapse_steps` steps in a row: the discriminator then wins outright
and the generator stops learning.

A run directory holds::

    RUN/
      config.yaml     the resolved configuration (method, data, networks, losses, schedule)
      generator/      the x -> y network: model.safetensors + config.json (`load_translator`)
      samples/        step-N.png: training frames, whole, and their translations
      checkpoints/    the latest checkpoints
      log.jsonl       mean losses, lr and speed every `log_every` steps; warnings
      metrics.json    steps, seconds, seconds per step, last losses, warnings
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

from angiosynth.config import TranslateConfig
from angiosynth.errors import OptionError
from angiosynth.gan.losses import ImagePool, discriminator_loss
from angiosynth.gan.methods import TranslationMethod, judge
from angiosynth.gan.segmenter import load_segmenter
from angiosynth.gan.steps import StepImages
from angiosynth.gan.translator import (
    GENERATOR_DIR,
    attention_batch,
    resize_to,
    save_translator,
    translate_batch,
)
from angiosynth.progress import Progress
from angiosynth.runfiles import LOG_FILE, METRICS_FILE, save_figure_atomic, write_json_atomic
from angiosynth.training.batches import shuffled_positions, step_generator
from angiosynth.training.checkpoint import CHECKPOINTS_DIR, Checkpointer
from angiosynth.training.loop import TrainLoop, make_accelerator
from angiosynth.training.rundir import check_out, start_run_dir

SAMPLES_DIR = "samples"
#: Frames of each domain shown in RUN/samples/step-N.png.
SAMPLE_FRAMES = 4


@dataclass(frozen=True)
class TranslateResult:
    """What `train_translation` wrote and measured."""

    out: Path
    method: str
    steps: int
    seconds: float
    seconds_per_step: float
    last_losses: dict
    warnings: list[str]


def train_translation(
    data,
    method: str,
    config: TranslateConfig,
    out: Path,
    progress: Progress | None = None,
    on_log: Callable[[dict], None] | None = None,
    overwrite: bool = False,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    segmenter: Path | None = None,
) -> TranslateResult | None:
    """Trains `method` on the unpaired domains of `data` (a `data.translation.TranslationData`)
    and writes the run directory `out`.

    Runs on what `accelerate launch` provides; `train.mixed_precision` selects bf16/fp16.

    Args:
        stop_after: stop with a checkpoint after this many steps, as if interrupted (the result
            is then None).
        resume: continue from the latest checkpoint in `out`.
        on_log: called with every log record (losses, warnings).
        segmenter: a `train segmenter` run, CAS-GAN's frozen vessel segmenter (casgan.vsgl).

    Raises:
        OptionError: crops larger than the frames, or a batch that does not split over the
            processes.
        OutputExistsError, ResumeError: see `training.rundir.check_out`.
    """
    out, cfg = Path(out), config.train
    accelerator = make_accelerator(cfg.mixed_precision)
    crops = CropSampler(data.x_train, data.y_train, config, accelerator.num_processes)
    resolved = {"source": data.description, "method": method, **config.model_dump(mode="json")}
    network = _segmenter_for(method, config, segmenter)
    if network is not None:
        resolved["segmenter"] = str(Path(segmenter).resolve())
    check_out(out, resume, overwrite, resolved, "train")
    if accelerator.is_main_process:
        start_run_dir(out, resolved, fresh=not resume, outputs=(GENERATOR_DIR, SAMPLES_DIR))
    set_seed(cfg.seed)  # after the segmenter: the initial weights do not depend on it
    fit = _TranslationFit(accelerator, TranslationMethod(method, config, network), crops,
                         config)  # fmt: skip
    total = cfg.max_steps or cfg.epochs_for(method) * crops.steps_per_epoch
    fit.schedule(total)
    loop = TrainLoop(
        accelerator, fit.step, cfg, total, log_file=out / LOG_FILE,
        checkpointer=fit.checkpointer(out / CHECKPOINTS_DIR), extra_state=fit.state,
        learning_rate=fit.learning_rate, on_log=on_log, progress=progress, desc=method,
    )  # fmt: skip
    fit.loop = loop
    if resume:
        fit.restore(loop.restore(loop.checkpointer.latest()))
    started = time.monotonic()
    samples = SampleSheet(data, config, out / SAMPLES_DIR, cfg.sample_every)
    fit.on_step_end = samples.maybe_write
    steps = loop.run(fit.step_count, stop_after)
    accelerator.wait_for_everyone()
    if steps < total:
        accelerator.end_training()
        return None
    seconds = time.monotonic() - started
    translator = accelerator.unwrap_model(fit.generators).translator
    result = TranslateResult(
        out, method, steps, seconds, seconds / max(steps - fit.resumed_at, 1), loop.last,
        fit.warnings,
    )  # fmt: skip
    if accelerator.is_main_process:
        save_translator(translator, method, config, out / GENERATOR_DIR)
        samples.write(translator, steps)
        write_json_atomic(out / METRICS_FILE, _metrics(result, crops))
    accelerator.end_training()
    return result


def _segmenter_for(method: str, config: TranslateConfig, run: Path | None):
    """The frozen vessel segmenter CAS-GAN's VSGL needs (None for every other method and cell).

    Raises:
        OptionError: a segmenter for a method that has no use for it, or crops it cannot take.
        SegmenterFileError: `run` holds no usable segmenter.
    """
    if run is None:
        return None
    if method != "casgan":
        raise OptionError(f"--segmenter is used by casgan only, not by {method}")
    if not config.casgan.vsgl:
        return None
    network = load_segmenter(run)[0]
    if config.data.crop_size % network.factor:
        raise OptionError(
            f"data.crop_size {config.data.crop_size} must be divisible by {network.factor}, "
            f"the downsampling of the segmenter {run}"
        )
    return network


class CropSampler:
    """The crops of step i: x by a seeded permutation per epoch, y drawn at random (CycleGAN's
    unaligned pairing), each resized to `data.image_size` when set, cropped at a random place
    and flipped at random; (n, 1, crop, crop) in [-1, 1]."""

    def __init__(self, x_source, y_source, config: TranslateConfig, processes: int) -> None:
        cfg, data = config.train, config.data
        per_process, uneven = divmod(cfg.batch_size, processes)
        if per_process == 0 or uneven:
            raise OptionError(
                f"train.batch_size {cfg.batch_size} does not split into {processes} processes"
            )
        self.x, self.y, self.data, self.seed = x_source, y_source, data, cfg.seed
        self.batch, self.per_process = cfg.batch_size, per_process
        for name, source in (("x", x_source), ("y", y_source)):
            side = min(data.image_size or min(source.shape), *source.shape)
            if data.crop_size > side:
                raise OptionError(
                    f"data.crop_size {data.crop_size} exceeds the {name} frames "
                    f"({source.shape[1]} x {source.shape[0]} at image_size {data.image_size})"
                )
        self.steps_per_epoch = cfg.steps_per_epoch or max(
            1, math.ceil(max(len(x_source), len(y_source)) / cfg.batch_size)
        )

    def batch_of(self, step: int, process: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) crops of `process` at `step`."""
        n = self.per_process
        xs = shuffled_positions(self.seed, step, process, len(self.x), self.steps_per_epoch,
                                self.batch, n)  # fmt: skip
        gen = step_generator(self.seed, step, process)
        ys = torch.randint(len(self.y), (n,), generator=gen).numpy()
        return self._crops(self.x.read(xs), gen), self._crops(self.y.read(ys), gen)

    def _crops(self, frames: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        images = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None]
        images = resize_to(images, self.data.image_size)
        c = self.data.crop_size
        out = []
        for image in images:
            top = int(torch.randint(image.shape[-2] - c + 1, (), generator=gen))
            left = int(torch.randint(image.shape[-1] - c + 1, (), generator=gen))
            crop = image[:, top : top + c, left : left + c]
            if self.data.flip and torch.rand((), generator=gen).item() < 0.5:
                crop = crop.flip(-1)
            out.append(crop)
        return torch.stack(out) * 2 - 1


class _TranslationFit:
    """Networks, optimisers, schedules, pools and the step function of one run."""

    def __init__(self, accelerator, method: TranslationMethod, crops: CropSampler, config):
        cfg = config.train
        self.accelerator, self.method, self.crops, self.cfg = accelerator, method, crops, cfg
        opt_g = torch.optim.Adam(method.generators.parameters(), lr=cfg.lr, betas=cfg.betas,
                                 weight_decay=cfg.weight_decay)  # fmt: skip
        opt_d = torch.optim.Adam(method.discriminators.parameters(), lr=cfg.lr,
                                 betas=cfg.betas, weight_decay=cfg.weight_decay)  # fmt: skip
        self.generators, self.discriminators, self.opt_g, self.opt_d = accelerator.prepare(
            method.generators, method.discriminators, opt_g, opt_d
        )
        shape = (1, config.data.crop_size, config.data.crop_size)
        pool = config.cycle.pool_size if method.name != "cut" else 0
        self.pools = {d: ImagePool(pool, shape).to(accelerator.device) for d in method.domains}
        self.step_count = self.resumed_at = 0
        self.low_steps, self.warnings = 0, []
        self.loop = None
        self.on_step_end: Callable | None = None

    def schedule(self, total: int) -> None:
        """Constant lr, then linear decay to 0 over the last `decay_share` of `total` steps."""
        start = total - round(total * self.cfg.decay_share)

        def factor(step: int) -> float:
            return 1.0 - max(0, step - start) / (total - start + 1)

        self.sched_g, self.sched_d = (
            self.accelerator.prepare(torch.optim.lr_scheduler.LambdaLR(o, factor))
            for o in (self.opt_g, self.opt_d)
        )

    def checkpointer(self, root: Path) -> Checkpointer:
        models = {"generators": self.generators, "discriminators": self.discriminators}
        models |= {f"pool_{d}": pool for d, pool in self.pools.items()}
        return Checkpointer(
            root, self.accelerator, models=models,
            optimizers={"generators": self.opt_g, "discriminators": self.opt_d},
            schedules={"generators": self.sched_g, "discriminators": self.sched_d},
            keep=self.cfg.keep_checkpoints,
        )  # fmt: skip

    def state(self) -> dict:
        return {"low_steps": self.low_steps, "warnings": self.warnings}

    def restore(self, state: dict) -> None:
        self.low_steps, self.warnings = state["low_steps"], state["warnings"]
        self.step_count = self.resumed_at = state["step"]

    def learning_rate(self) -> float:
        return float(self.opt_g.param_groups[0]["lr"])

    def step(self, step: int) -> dict:
        """One generator and one discriminator step; the losses for the log."""
        process = self.accelerator.process_index
        x, y = (t.to(self.accelerator.device) for t in self.crops.batch_of(step, process))
        gen = step_generator(self.cfg.seed, step, process, 1)
        images, g_loss, parts = self._generator_step(x, y, gen)
        d_losses = self._discriminator_step({"x": x, "y": y} | images.reals, images, gen)
        self.sched_g.step()
        self.sched_d.step()
        self._watch_collapse(step, d_losses)
        self.step_count = step + 1
        if self.on_step_end is not None and self.accelerator.is_main_process:
            self.on_step_end(self.accelerator.unwrap_model(self.generators).translator, step + 1)
        return {"g_loss": g_loss, **parts, **{f"d_{k}": v for k, v in d_losses.items()}}

    def _generator_step(self, x, y, gen) -> tuple[StepImages, float, dict]:
        with self.accelerator.autocast():
            images = self.generators(x, y, gen)
            logits = judge(self.accelerator.unwrap_model(self.discriminators), images.fakes)
            loss, parts = self.method.generator_loss(images, x, y, logits)
        self.accelerator.backward(loss)
        self._clip(self.generators)
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)
        return images, float(loss.detach()), parts

    def _discriminator_step(self, reals: dict, images: StepImages, gen) -> dict[str, float]:
        batches, sizes = {}, {}
        for domain in self.method.domains:
            fake = self.pools[domain].query(images.fakes[domain].detach(), gen)
            batches[domain] = torch.cat([reals[domain], fake.to(reals[domain])])
            sizes[domain] = len(reals[domain])
        with self.accelerator.autocast():
            logits = self.discriminators(batches)
            losses = {
                d: discriminator_loss(logits[d][: sizes[d]], logits[d][sizes[d] :])
                for d in self.method.domains
            }
        self.accelerator.backward(sum(losses.values()))
        self._clip(self.discriminators)
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        return {d: float(v.detach()) for d, v in losses.items()}

    def _clip(self, module) -> None:
        if self.cfg.max_grad_norm is not None:
            self.accelerator.clip_grad_norm_(module.parameters(), self.cfg.max_grad_norm)

    def _watch_collapse(self, step: int, d_losses: dict[str, float]) -> None:
        """Counts steps in a row with every discriminator loss under the threshold; logs a
        warning once the count reaches `collapse_steps` (and again after each recovery)."""
        low = max(d_losses.values()) < self.cfg.collapse_threshold
        self.low_steps = self.low_steps + 1 if low else 0
        if self.low_steps == self.cfg.collapse_steps:
            message = (
                f"step {step + 1}: the discriminator loss has stayed below "
                f"{self.cfg.collapse_threshold} for {self.cfg.collapse_steps} steps; the "
                "discriminators win outright and the generator may have stopped learning "
                "(lower lr, fewer discriminator layers, or a larger pool)"
            )
            self.warnings.append(message)
            if self.loop is not None:
                self.loop.write_log({"step": step + 1, "warning": message})


class SampleSheet:
    """RUN/samples/step-N.png: a few whole training frames of each domain and their
    translations (x -> y), drawn at the same positions every time."""

    def __init__(self, data, config: TranslateConfig, folder: Path, every: int | None) -> None:
        self.folder, self.every, self.size = Path(folder), every, config.data.image_size
        rng = np.random.default_rng(config.train.seed)
        self.frames = {
            name: source.read(np.sort(rng.choice(len(source), min(SAMPLE_FRAMES, len(source)),
                                                 replace=False)))
            for name, source in (("x", data.x_train), ("y", data.y_train))
        }  # fmt: skip

    def maybe_write(self, translator, step: int) -> None:
        if self.every is not None and step % self.every == 0:
            self.write(translator, step)

    def write(self, translator, step: int) -> Path:
        """Draws the sheet with `translator` in its current state; returns the file."""
        import matplotlib.pyplot as plt

        x = self.frames["x"]
        x = resize_to(torch.from_numpy(x)[:, None], self.size)[:, 0].numpy()
        rows = [("non-contrast x", x), ("translated G(x)", translate_batch(translator, x))]
        attention = attention_batch(translator, x)
        if attention is not None:
            rows.append(("attention A (white: drawn, black: the input kept)", attention))
        y = resize_to(torch.from_numpy(self.frames["y"])[:, None], self.size)[:, 0].numpy()
        rows.append(("real angiograms y", y))
        cols = max(len(r[1]) for r in rows)
        fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.3 * len(rows)),
                                 squeeze=False)  # fmt: skip
        for r, (title, images) in enumerate(rows):
            for c in range(cols):
                ax = axes[r][c]
                ax.axis("off")
                if c < len(images):
                    ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            axes[r][0].set_title(title, loc="left", fontsize=9)
        fig.suptitle(f"step {step}", fontsize=10)
        fig.tight_layout()
        path = self.folder / f"step-{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure_atomic(fig, path)
        plt.close(fig)
        return path


def _metrics(result: TranslateResult, crops: CropSampler) -> dict:
    return {
        "method": result.method,
        "steps": result.steps,
        "steps_per_epoch": crops.steps_per_epoch,
        "x_frames": len(crops.x),
        "y_frames": len(crops.y),
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds_per_step, 4),
        "last_losses": result.last_losses,
        "warnings": result.warnings,
    }
