"""`angiosynth sample`: synthetic DSA frames from a trained latent diffusion model."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import fail, one_line_errors, progress_bar
from angiosynth.config import SAMPLERS, SampleConfig


@one_line_errors
def sample_command(
    run: Path = typer.Argument(..., help="Run directory of `angiosynth train ldm`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    condition: str = typer.Option(None, "--condition",
                                  help='"AC A", "PC A", "AC B" or "PC B" (canonical angles).'),
    prompt: str = typer.Option(None, "--prompt", help="A prompt sentence of the template."),
    design: str = typer.Option(None, "--design",
                               help="reader-study (10 batches x 40, 10 per condition per "
                               "batch) or conditions (--n per condition)."),
    n: int = typer.Option(None, "--n", min=1, help="Images (per condition with --design "
                          "conditions) [default: 1]."),
    sampler: str = typer.Option(None, "--sampler",
                                help="ddpm, ddim or dpmpp [default: the run config's]."),
    steps: int = typer.Option(None, "--steps", min=1, help="Sampling steps [default: config]."),
    guidance: float = typer.Option(None, "--guidance", min=0,
                                   help="Classifier-free guidance weight (1: none) "
                                   "[default: config]."),
    seed: int = typer.Option(0, "--seed", help="Image i gets seed + i."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dicom: bool = typer.Option(False, "--dicom", help="Also write DICOM files marked synthetic."),
    real: Path = typer.Option(None, "--real", help="Curated dataset: also draw OUT/grid.png, "
                              "samples beside real frames of each condition."),
) -> None:  # fmt: skip
    """Sample synthetic DSA frames (PNG 8- and 16-bit, optionally DICOM) and samples.parquet.

    Give one of `--condition`, `--prompt` or `--design`. Each image's seed is `--seed` plus its
    index, so the same seed gives the same images whatever the batch size or the number of
    processes (`accelerate launch -m angiosynth sample ...` shards the images). The paper
    samples with ancestral DDPM, 1000 steps; DDIM and DPM-Solver++ ("dpmpp") reach similar
    quality in 20-50 steps.
    """
    from angiosynth.diffusion.figures import condition_grid
    from angiosynth.diffusion.pipeline import LatentDiffusion
    from angiosynth.diffusion.sampling import plan_samples, sample_to_directory
    from angiosynth.runtime import resolve_device

    if sampler is not None and sampler not in SAMPLERS:
        fail(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    requests = plan_samples(seed=seed, n=n, condition=condition, prompt=prompt,
                            design=design)  # fmt: skip
    model = LatentDiffusion.load(run, _device(device, resolve_device))
    defaults = model.config.sample
    settings = SampleConfig(
        sampler=sampler or defaults.sampler, steps=steps or defaults.steps,
        guidance=defaults.guidance if guidance is None else guidance,
        batch_size=batch_size or defaults.batch_size,
    )  # fmt: skip
    table = sample_to_directory(
        model, requests, out, sampler=settings.sampler, steps=settings.steps,
        guidance=settings.guidance, batch_size=settings.batch_size, dicom=dicom,
        progress=progress_bar,
    )  # fmt: skip
    grid = condition_grid(out, real, out / "grid.png", seed=seed) if real else None
    typer.echo(
        f"{len(table)} images ({settings.sampler}, {settings.steps} steps, guidance "
        f"{settings.guidance:g}, model {model.model_hash}) -> {out}/samples.parquet"
    )
    if grid is not None:
        typer.echo(f"grid: {grid}")


def _device(name: str, resolve):
    from accelerate import PartialState

    return PartialState().device if name == "auto" else resolve(name)
