"""Benchmark: sampling and training throughput of the latent diffusion model on the CPU.

Usage: python benchmarks/sampling.py [--batch 16] [--repeats 3] [--quick] [--run RUN]
                                     [--train-steps 10] [--paper-repeats 2]
                                     [--sections sampling,training,paper]

Prints one table per section (median over repeats, wall-clock seconds):

1. Sampling: `LatentDiffusion.sample` for a batch of `--batch` images (prompts cycling over the
   four conditions, seeds 0..B-1) with ddpm-1000, ddim-50 and dpmpp-20, at guidance 1 and 2
   (guidance != 1 runs the network on the empty and the real prompt: twice the evaluations).
   Reported: seconds per batch (the VAE decode of the batch included), images/s, network
   evaluations (NFE) per image, ms per NFE of one image (seconds / (batch x NFE)) and ms per
   batched network call. The model is configs/tiny.yaml with seeded random weights (speed does
   not depend on the weights), or the trained run given with `--run`. `--quick` times ddpm-1000
   once instead of `--repeats` times.
2. Training, tiny configuration: `train ldm`'s own step (`training.ldm._LDMFit.step`: batch
   drawn from a memory-mapped latent cache of random posteriors, epsilon MSE, forward +
   backward + gradient clipping + AdamW + EMA, under accelerate) at train_ldm.batch_size, with
   mixed precision "no" (fp32) and "bf16"; median of `--train-steps` steps after 2 warm-up
   steps.
3. The paper configuration (configs/paper.yaml): forward + backward
   seconds per image of UNet + text encoder on 3 x 64 x 64 latents at batch 1 (and 2 while the
   estimated time stays within `--paper-budget` seconds), fp32 and bf16, one warm-up step and
   `--paper-repeats` timed steps each; and the autoencoder's encode + decode seconds per
   256 x 256 image; with parameter counts.

`--sections` runs some of them (e.g. `--sections paper`). Runs offline: every model is built
from its configuration with `torch.manual_seed`, by the factory `train ldm` uses.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tabulate import tabulate

from angiosynth.conditions import CONDITIONS, condition_prompt
from angiosynth.config import LDMConfig, load_config
from angiosynth.diffusion.pipeline import LatentDiffusion
from angiosynth.diffusion.schedulers import sampling_scheduler, training_scheduler
from angiosynth.models.autoencoder import build_vae
from angiosynth.models.denoiser import Denoiser
from angiosynth.models.text_encoder import PromptTokenizer
from angiosynth.runtime import autocast
from angiosynth.training.ldm import LATENTS_FILE, CachedLatents, _LDMFit, build_denoiser
from angiosynth.training.loop import make_accelerator

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: (sampler, steps) of section 1.
SAMPLERS = (("ddpm", 1000), ("ddim", 50), ("dpmpp", 20))
GUIDANCES = (1.0, 2.0)
PRECISIONS = ("fp32", "bf16")
CPU = torch.device("cpu")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (and whether it has AMX)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return f"{name} (AMX bf16: {'yes' if 'amx_bf16' in info else 'no'})"


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def seeded_denoiser(config: LDMConfig, tokenizer: PromptTokenizer, seed: int) -> Denoiser:
    """UNet + text encoder of `config` with seeded random weights (`train ldm`'s factory)."""
    torch.manual_seed(seed)
    return build_denoiser(config, tokenizer, config.vae.latent_channels)


def random_pipeline(config: LDMConfig, seed: int) -> LatentDiffusion:
    tokenizer = PromptTokenizer.from_template(config.text_encoder.max_length)
    denoiser = seeded_denoiser(config, tokenizer, seed).eval().requires_grad_(False)
    torch.manual_seed(seed)
    vae = build_vae(config.vae, config.data.image_size).eval().requires_grad_(False)
    return LatentDiffusion(denoiser, tokenizer, vae, config, "random-init", torch.device("cpu"))


def prompts_for(n: int) -> list[str]:
    """`n` prompts cycling over the four conditions."""
    return [condition_prompt(CONDITIONS[i % len(CONDITIONS)]) for i in range(n)]


# --- 1. sampling --------------------------------------------------------------------------------


def bench_sampling(pipe: LatentDiffusion, batch: int, repeats: int, quick: bool) -> list[list]:
    prompts, seeds = prompts_for(batch), list(range(batch))
    for guidance in GUIDANCES:  # warm-up: allocations and kernels of both batch shapes
        pipe.sample(prompts, seeds, "dpmpp", 2, guidance)
    rows = []
    for sampler, steps in SAMPLERS:
        scheduler = sampling_scheduler(sampler, pipe.config.diffusion)
        scheduler.set_timesteps(steps)
        calls = len(scheduler.timesteps)  # one batched network call per timestep
        n = 1 if quick and sampler == "ddpm" else repeats
        for guidance in GUIDANCES:
            per_call = 1 if guidance == 1.0 else 2
            times = timed(
                lambda s=sampler, k=steps, g=guidance: pipe.sample(prompts, seeds, s, k, g), n
            )
            median = statistics.median(times)
            nfe = calls * per_call
            rows.append(
                [
                    f"{sampler}-{steps}",
                    f"{guidance:g}",
                    n,
                    f"{median:.2f}",
                    ", ".join(f"{t:.2f}" for t in times),
                    f"{batch / median:.2f}",
                    nfe,
                    f"{1e3 * median / (batch * nfe):.3f}",
                    f"{1e3 * median / calls:.1f}",
                ]
            )
    return rows


# --- 2. training, tiny config -------------------------------------------------------------------


def training_fit(config: LDMConfig, precision: str, seed: int, folder: Path) -> _LDMFit:
    """`train ldm`'s model, optimiser, EMA and step on a latent cache of random posteriors
    (N = 4 batches of training frames with the four conditions' prompts)."""
    cfg = config.train_ldm
    n, channels, size = 4 * cfg.batch_size, config.vae.latent_channels, config.latent_size
    rng = np.random.default_rng(seed)
    posteriors = np.concatenate(
        [rng.standard_normal((n, channels, size, size)), np.full((n, channels, size, size), 0.1)],
        axis=1,
    ).astype(np.float32)
    np.save(folder / LATENTS_FILE, posteriors)
    prompts = prompts_for(n)
    rows = pd.DataFrame({"prompt": prompts, "view": [CONDITIONS[i % 4] for i in range(n)]})
    accelerator = make_accelerator(precision)
    return _LDMFit(accelerator, config, rows, CachedLatents(folder / LATENTS_FILE), 1.0)


def bench_training(config: LDMConfig, steps: int, warmup: int, seed: int) -> list[list]:
    batch = config.train_ldm.batch_size
    rows = []
    for precision in PRECISIONS:
        with tempfile.TemporaryDirectory() as folder:
            fit = training_fit(config, "no" if precision == "fp32" else precision, seed,
                               Path(folder))  # fmt: skip
            for i in range(warmup):
                fit.step(i)
            counter = iter(range(warmup, warmup + steps))
            times = timed(lambda f=fit, c=counter: f.step(next(c)), steps)
        median = statistics.median(times)
        rows.append(
            [
                precision,
                batch,
                steps,
                f"{median:.3f}",
                f"{min(times):.3f}",
                f"{max(times):.3f}",
                f"{1 / median:.2f}",
                f"{batch / median:.1f}",
            ]
        )
    return rows


# --- 3. the paper's configuration ---------------------------------------------------------------


def bench_paper(
    config: LDMConfig, repeats: int, budget: float, seed: int
) -> tuple[list[list], list[list], list[list]]:
    tokenizer = PromptTokenizer.from_template(config.text_encoder.max_length)
    model = seeded_denoiser(config, tokenizer, seed).train()
    torch.manual_seed(seed)
    vae = build_vae(config.vae, config.data.image_size).eval().requires_grad_(False)
    counts = [
        ["UNet", f"{n_params(model.unet) / 1e6:.1f}"],
        ["text encoder", f"{n_params(model.text_encoder) / 1e6:.1f}"],
        ["VAE", f"{n_params(vae) / 1e6:.1f}"],
        ["all", f"{(n_params(model) + n_params(vae)) / 1e6:.1f}"],
    ]
    scheduler = training_scheduler(config.diffusion)
    channels, size = config.vae.latent_channels, config.latent_size

    def fwd_bwd(batch: int, precision: str) -> Callable[[], None]:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn((batch, channels, size, size), generator=gen)
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=gen)
        noisy = scheduler.add_noise(z, noise, t)
        ids, mask = tokenizer.encode(prompts_for(batch))

        def run() -> None:
            with autocast(CPU, precision):
                pred = model(noisy, t, ids, mask)
            F.mse_loss(pred.float(), noise).backward()
            model.zero_grad(set_to_none=True)

        return run

    rows, spent = [], {}
    for batch in (1, 2):
        for precision in PRECISIONS:
            if batch > 1:
                estimate = spent[(1, precision)] * batch
                if estimate > budget:
                    rows.append(
                        [
                            batch,
                            precision,
                            "skipped",
                            f"estimate {estimate:.0f} s",
                            "",
                            f"> --paper-budget {budget:g} s",
                            "",
                        ]
                    )
                    continue
            run = fwd_bwd(batch, precision)
            start = time.perf_counter()
            first = timed(run, 1)[0]
            times = timed(run, repeats)
            spent[(batch, precision)] = time.perf_counter() - start
            median = statistics.median(times)
            rows.append(
                [
                    batch,
                    precision,
                    repeats,
                    f"{first:.2f}",
                    f"{median:.2f}",
                    ", ".join(f"{t:.2f}" for t in times),
                    f"{median / batch:.2f}",
                ]
            )

    side = config.data.image_size
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand((1, 1, side, side), generator=gen) * 2 - 1  # a frame in [-1, 1]

    @torch.no_grad()
    def round_trip(precision: str) -> None:
        with autocast(CPU, precision):
            vae.decode(vae.encode(image).latent_dist.mode())

    vae_rows = []
    for precision in PRECISIONS:
        first = timed(lambda p=precision: round_trip(p), 1)[0]
        times = timed(lambda p=precision: round_trip(p), repeats)
        median = statistics.median(times)
        vae_rows.append(
            [
                precision,
                repeats,
                f"{first:.2f}",
                f"{median:.2f}",
                ", ".join(f"{t:.2f}" for t in times),
            ]
        )
    return counts, rows, vae_rows


def print_table(rows: list[list], headers: list[str]) -> None:
    """A GitHub-markdown table of pre-formatted cells."""
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))


def print_sampling(args: argparse.Namespace, config: LDMConfig) -> None:
    """Section 1: sampling throughput of the tiny (or a trained) model."""
    section = time.perf_counter()
    if args.run is not None:
        pipe = LatentDiffusion.load(args.run)
        source = f"run {args.run} (model {pipe.model_hash})"
    else:
        pipe = random_pipeline(config, args.seed)
        source = f"{args.config.name}, seeded random weights"
    unet_m, text_m = n_params(pipe.denoiser.unet) / 1e6, n_params(pipe.denoiser.text_encoder) / 1e6
    rows = bench_sampling(pipe, args.batch, args.repeats, args.quick)
    size = pipe.config.data.image_size
    print()
    print(
        f"1. sampling: {source}; UNet {unet_m:.2f} M + text encoder {text_m:.2f} M, "
        f"{size}x{size} images, latents {pipe.vae.config.latent_channels}x"
        f"{pipe.config.latent_size}x{pipe.config.latent_size}; batch {args.batch}, fp32; "
        f"{time.perf_counter() - section:.0f} s"
    )
    print()
    headers = [
        "sampler",
        "guidance",
        "repeats",
        "s/batch (median)",
        "all repeats (s)",
        "images/s",
        "NFE/image",
        "ms/NFE/image",
        "ms/network call",
    ]
    print_table(rows, headers)


def print_training(args: argparse.Namespace, config: LDMConfig) -> None:
    """Section 2: training-step throughput of the tiny configuration."""
    section = time.perf_counter()
    rows = bench_training(config, args.train_steps, args.warmup, args.seed)
    cfg = config.train_ldm
    print()
    print(
        f"2. training step, {args.config.name}: latents {config.vae.latent_channels}x"
        f"{config.latent_size}x{config.latent_size}, AdamW lr {cfg.lr:g}, clip "
        f"{cfg.max_grad_norm:g}; median of {args.train_steps} steps after {args.warmup} warm-up; "
        f"{time.perf_counter() - section:.0f} s"
    )
    print()
    headers = [
        "precision",
        "batch",
        "steps",
        "s/step (median)",
        "min",
        "max",
        "steps/s",
        "images/s",
    ]
    print_table(rows, headers)


def print_paper(args: argparse.Namespace, config: LDMConfig) -> None:
    """Section 3: parameter counts and per-image cost of the paper's configuration."""
    section = time.perf_counter()
    paper = load_config(args.paper_config, LDMConfig)
    counts, rows, vae_rows = bench_paper(paper, args.paper_repeats, args.paper_budget, args.seed)
    print()
    print(
        f"3. {args.paper_config.name}: latents {paper.vae.latent_channels}x"
        f"{paper.latent_size}x{paper.latent_size}, images {paper.data.image_size}x"
        f"{paper.data.image_size}; {time.perf_counter() - section:.0f} s"
    )
    print()
    print_table(counts, ["network", "parameters (M)"])
    print()
    headers = [
        "batch",
        "precision",
        "repeats",
        "first step (s)",
        "s/step (median)",
        "all repeats (s)",
        "s/image",
    ]
    print("UNet + text encoder, forward + backward (no optimiser step):")
    print()
    print_table(rows, headers)
    print()
    print("VAE encode + decode of one image:")
    print()
    headers = ["precision", "repeats", "first (s)", "s/image (median)", "all repeats (s)"]
    print_table(vae_rows, headers)


SECTIONS = {"sampling": print_sampling, "training": print_training, "paper": print_paper}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="images per sampling batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed sampling runs per setting")
    parser.add_argument("--quick", action="store_true", help="time ddpm-1000 once")
    parser.add_argument("--run", type=Path, help="a trained `train ldm` run to sample from")
    parser.add_argument(
        "--config",
        type=Path,
        default=CONFIGS / "tiny.yaml",
        help="configuration of the random-init sampling model and of training",
    )
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument(
        "--sections",
        type=lambda text: text.split(","),
        default=list(SECTIONS),
        help="comma-separated sections to run: sampling, training, paper (default: all)",
    )
    parser.add_argument("--paper-config", type=Path, default=CONFIGS / "paper.yaml")
    parser.add_argument("--paper-repeats", type=int, default=2, help="timed steps per setting")
    parser.add_argument(
        "--paper-budget",
        type=float,
        default=240.0,
        help="largest estimated seconds for a batch-2 setting of section 3",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(
            f"--sections: unknown section {unknown[0]!r} (choose from {', '.join(SECTIONS)})"
        )

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = load_config(args.config, LDMConfig)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores: {cpu_model()}"
    )
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    for name in args.sections:
        SECTIONS[name](args, config)
    print()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
