"""`angiosynth train`: the autoencoder and the latent diffusion model (paper §4.3-4.5), the
contrast-free translation methods (CycleGAN, AttentionGAN, CUT, CAS-GAN) and CAS-GAN's vessel
segmenter."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import echo_above_bar, one_line_errors, progress_bar
from angiosynth.config import LDMConfig, load_config

app = typer.Typer(
    help="Train the autoencoder (`vae`), the latent diffusion model (`ldm`), a "
    "contrast-free translation method (`translate`) and the vessel segmenter (`segmenter`).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


def load_ldm_config(path: Path | None, max_steps: int | None, seed: int | None, section: str):
    """The configuration of `path` (default: the paper's), with CLI overrides of one section."""
    config = LDMConfig() if path is None else load_config(path, LDMConfig)
    updates = {k: v for k, v in (("max_steps", max_steps), ("seed", seed)) if v is not None}
    if not updates:
        return config
    part = getattr(config, section).model_copy(update=updates)
    return config.model_copy(update={section: part})


@app.command("vae")
@one_line_errors
def vae_command(
    dataset: Path = typer.Argument(..., help="Curated dataset with arterial.parquet."),
    config: Path = typer.Option(None, "--config", "-c", dir_okay=False,
                                help="YAML configuration [default: the paper's numbers]."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Override train_vae.max_steps."),
    seed: int = typer.Option(None, "--seed", help="Override train_vae.seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model in OUT."),
) -> None:  # fmt: skip
    """Train the 1-channel AutoencoderKL on the arterial frames of the training split.

    Loss: L1 + LPIPS (`train_vae.perceptual`: lpips when torchvision's VGG-16 is in the torch
    cache, else the shift-tolerant LPIPS whose weights ship with `stlpips-pytorch`) + KL, and an
    optional PatchGAN term. The validation loss is measured each epoch; the best epoch is kept
    and training stops after `patience` epochs without improvement. The latent scale factor
    1 / std(z) is then measured on training latents and stored in OUT/vae/config.json.

    Checkpoints (every `checkpoint_every` steps, the last `keep_checkpoints` kept) hold the
    autoencoder, the discriminator, their optimisers, the batch order and the RNG states;
    `--resume` continues exactly. Writes OUT/config.yaml, OUT/vae/ (safetensors),
    OUT/checkpoints/, OUT/log.jsonl, OUT/metrics.json. Runs under `accelerate launch`
    unchanged.
    """
    from angiosynth.training.vae import train_vae

    cfg = load_ldm_config(config, max_steps, seed, "train_vae")
    result = train_vae(dataset, cfg, out, progress_bar, _print_epoch, overwrite, resume=resume)
    typer.echo(
        f"autoencoder: {out}/vae (best validation loss {result.best_val_loss:.4f} after "
        f"{result.epochs} epochs, {result.steps} steps; perceptual {result.perceptual}; "
        f"scale factor {result.scale_factor:.4f}; {result.seconds:.0f} s)"
    )


def _print_epoch(record: dict) -> None:
    echo_above_bar(
        f"epoch {record['epoch']}: train {record['train_loss']:.4f}, validation "
        f"{record['val_loss']:.4f} ({record['seconds']:.0f} s)"
    )


@app.command("ldm")
@one_line_errors
def ldm_command(
    dataset: Path = typer.Argument(..., help="Curated dataset with arterial.parquet."),
    vae: Path = typer.Option(..., "--vae", help="Run directory of `angiosynth train vae`."),
    config: Path = typer.Option(None, "--config", "-c", dir_okay=False,
                                help="YAML configuration [default: the paper's numbers]."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Override train_ldm.max_steps."),
    seed: int = typer.Option(None, "--seed", help="Override train_ldm.seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's latest checkpoint."),
    unconditional: bool = typer.Option(False, "--unconditional",
                                       help="Train without prompts (every prompt empty)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run in OUT."),
) -> None:  # fmt: skip
    """Train the conditional latent diffusion model (UNet + prompt encoder) on cached latents.

    Epsilon-prediction MSE under the DDPM schedule of the config (CompVis "linear" betas
    0.0015-0.0195, T = 1000), AdamW over UNet and text encoder, EMA of the weights, condition
    dropout for classifier-free guidance, optional condition-balanced batches, gradient
    clipping, bf16/fp16 (`train_ldm.mixed_precision`) and gradient checkpointing.

    Checkpoints (every `checkpoint_every` steps, the last `keep_checkpoints` kept) hold model,
    EMA, optimiser, LR schedule, RNG states and the step; `--resume` continues exactly (the
    same steps as an uninterrupted run). The same command runs on N GPUs or nodes with
    `accelerate launch -m angiosynth.cli.main train ldm ...`.

    Writes OUT/config.yaml, vae/, unet/, text_encoder/, scheduler/, checkpoints/, log.jsonl,
    metrics.json.
    """
    from angiosynth.training.ldm import train_ldm

    cfg = load_ldm_config(config, max_steps, seed, "train_ldm")
    result = train_ldm(
        dataset, vae, cfg, out, unconditional=unconditional, resume=resume,
        overwrite=overwrite, progress=progress_bar,
    )  # fmt: skip
    typer.echo(
        f"latent diffusion model: {out} ({result.steps} steps, last loss "
        f"{result.final_loss:.4f}, {result.seconds:.0f} s)"
    )


@app.command("translate")
@one_line_errors
def translate_command(
    data: Path = typer.Argument(None, help="A curated dataset (with native frames and "
                                "arterial.parquet) or an XCAD folder; or give --x and --y."),
    method: str = typer.Option(..., "--method", "-m",
                               help="cyclegan, attentiongan, cut or casgan."),
    config: Path = typer.Option(None, "--config", "-c", dir_okay=False,
                                help="YAML configuration [default: the published settings, "
                                "configs/translate-paper.yaml]."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    x: Path = typer.Option(None, "--x", help="Folder of non-contrast images (with --y)."),
    y: Path = typer.Option(None, "--y", help="Folder of angiograms (with --x)."),
    split: str = typer.Option("train", "--split", help="Split of a curated dataset to train on."),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Override train.max_steps."),
    seed: int = typer.Option(None, "--seed", help="Override train.seed."),
    segmenter: Path = typer.Option(None, "--segmenter",
                                   help="A `train segmenter` run: CAS-GAN's frozen vessel "
                                   "segmenter (needed with casgan.vsgl)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run in OUT."),
) -> None:  # fmt: skip
    """Train a translation method from non-contrast X-ray (x) to angiograms (y), unpaired.

    DATA is a curated dataset (x = the native mask frames of the split, y = its native
    arterial-phase frames), an XCAD folder (train/trainC = x, train/trainB = y), or two plain
    folders given with `--x` and `--y`. Images are single-channel, 8 or 16 bit, kept in float
    end to end.

    The networks learn on random crops (`data.crop_size`) and translate whole frames (fully
    convolutional). CycleGAN: two ResNet generators, two PatchGANs, LSGAN, cycle and identity
    losses, an image pool. AttentionGAN (scheme II): CycleGAN with attention generators.
    CUT: one generator, PatchNCE. CAS-GAN: a background encoder shared by both domains, a
    vessel encoder and predictor (DRL), attention and content heads over the input (VSGG) and a
    semantic discriminator on the maps of a frozen vessel segmenter (VSGL, `--segmenter RUN`);
    each module switches off in the config's `casgan` section (the ablation of Table II).
    Adam 2e-4 (0.5, 0.999), constant then linearly decaying lr.

    Checkpoints (every `train.checkpoint_every` steps) hold networks, optimisers, LR schedules,
    image pools and RNG states; `--resume` continues exactly. A warning is printed when the
    discriminators' loss stays near 0. The same command runs on N GPUs with `accelerate launch
    -m angiosynth.cli.main train translate ...`; `train.mixed_precision` selects bf16/fp16.

    Writes OUT/config.yaml, generator/, samples/, checkpoints/, log.jsonl, metrics.json.
    """
    from angiosynth.config import TRANSLATION_METHODS, TranslateConfig
    from angiosynth.data.translation import load_translation_data
    from angiosynth.errors import OptionError
    from angiosynth.training.translate import train_translation

    if method not in TRANSLATION_METHODS:
        choices = ", ".join(TRANSLATION_METHODS)
        raise OptionError(f"--method must be one of {choices}, got {method!r}")
    if (x is None) != (y is None):
        raise OptionError("give both --x and --y (folders of non-contrast images and angiograms)")
    if (data is None) == (x is None):
        raise OptionError("give DATA (a curated dataset or an XCAD folder) or --x and --y")
    cfg = TranslateConfig() if config is None else load_config(config, TranslateConfig)
    updates = {k: v for k, v in (("max_steps", max_steps), ("seed", seed)) if v is not None}
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=updates)})
    domains = load_translation_data(data, x, y, split)
    result = train_translation(domains, method, cfg, out, progress_bar, _print_log, overwrite,
                               resume=resume, segmenter=segmenter)  # fmt: skip
    typer.echo(
        f"{method}: {out}/generator ({result.steps} steps, {result.seconds_per_step:.3f} s per "
        f"step, {result.seconds:.0f} s; samples in {out}/samples)"
    )


def _print_log(record: dict) -> None:
    if "warning" in record:
        echo_above_bar(f"warning: {record['warning']}")


@app.command("segmenter")
@one_line_errors
def segmenter_command(
    data: Path = typer.Argument(None, help="A curated dataset (with native frames and "
                                "arterial.parquet); or give --images and --masks."),
    config: Path = typer.Option(None, "--config", "-c", dir_okay=False,
                                help="YAML configuration with a `segmenter:` section "
                                "(configs/translate-tiny.yaml for a CPU) [default: the paper-sized "
                                "UNet of configs/translate-paper.yaml]."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write."),
    images: Path = typer.Option(None, "--images", help="Folder of angiograms (with --masks)."),
    masks: Path = typer.Option(None, "--masks", help="Folder of their vessel masks, same file "
                               "names (> 0.5 of the full scale is vessel)."),
    split: str = typer.Option("train", "--split", help="Split of a curated dataset to train on."),
    held_out: str = typer.Option("val", "--held-out", help="Split of the dataset scored after "
                                 "training; 'none' to skip."),
    held_out_images: Path = typer.Option(None, "--held-out-images",
                                         help="Held-out angiograms (with --images)."),
    held_out_masks: Path = typer.Option(None, "--held-out-masks",
                                        help="Their vessel masks (with --held-out-images)."),
    max_steps: int = typer.Option(None, "--max-steps", min=1,
                                  help="Override segmenter.train.max_steps."),
    seed: int = typer.Option(None, "--seed", help="Override segmenter.train.seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run in OUT."),
) -> None:  # fmt: skip
    """Train the vessel segmenter of CAS-GAN: a UNet from angiograms to vessel masks.

    DATA is a curated dataset: the native arterial frames of `--split` (what the translation
    methods' y domain is), with the phantom's vessel labels as targets when the dataset's
    archive has them (masks/ beside the curated DICOM folder), else vessel masks measured on
    their DSA frames (`evaluation.morphology.vessel_mask`). Or two folders, `--images DIR
    --masks DIR`, matched by file name (XCAD: `--images xcad/test/images --masks
    xcad/test/masks`).

    The UNet (`segmenter.model`: widths per level, GroupNorm) learns on random crops with
    random flips (`segmenter.data`), BCE with logits + soft Dice (`segmenter.train`), AdamW.
    Checkpoints (every `segmenter.train.checkpoint_every` steps) hold the network, its
    optimiser, the LR schedule and the RNG states; `--resume` continues exactly. Runs under
    `accelerate launch -m angiosynth.cli.main train segmenter ...` unchanged.

    After training, the held-out split (`--held-out`, or `--held-out-images/--held-out-masks`)
    is segmented whole and scored at threshold 0.5: Dice and clDice, mean and per frame.

    Writes OUT/config.yaml, segmenter/ (safetensors + config.json; `angiosynth segment`, and
    `train translate --method casgan --segmenter OUT`), checkpoints/, log.jsonl,
    metrics.json (with "held_out") and held_out.png (frames, true masks, predictions).
    """
    from angiosynth.config import TranslateConfig
    from angiosynth.data.segmentation import folder_segmentation, load_segmentation_set
    from angiosynth.errors import OptionError
    from angiosynth.evaluation.morphology import vessel_mask
    from angiosynth.evaluation.segmentation import record_held_out
    from angiosynth.training.segmenter import train_segmenter

    if (held_out_images is None) != (held_out_masks is None):
        raise OptionError("give both --held-out-images and --held-out-masks")
    if held_out_images is not None and data is not None:
        raise OptionError("--held-out-images goes with --images; for a dataset give --held-out")
    if data is not None and held_out == split:
        raise OptionError(f"--held-out {held_out} is the training split; give another split")
    whole = TranslateConfig() if config is None else load_config(config, TranslateConfig)
    cfg = whole.segmenter
    updates = {k: v for k, v in (("max_steps", max_steps), ("seed", seed)) if v is not None}
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=updates)})
    train_set = load_segmentation_set(data, split, images, masks, vessel_mask)
    scored = None
    if held_out_images is not None:
        scored = folder_segmentation(held_out_images, held_out_masks)
    elif data is not None and held_out != "none":
        scored = load_segmentation_set(data, held_out, dsa_mask=vessel_mask)
    result = train_segmenter(train_set, cfg, out, progress_bar, None, overwrite, resume=resume)
    typer.echo(
        f"segmenter: {out}/segmenter ({result.steps} steps, {result.seconds_per_step:.3f} s per "
        f"step, {result.seconds:.0f} s; {len(train_set)} frames, {train_set.targets} masks)"
    )
    if scored is not None:
        scores = record_held_out(out, scored)
        typer.echo(
            f"held out: Dice {scores['dice']:.3f}, clDice {scores['cl_dice']:.3f} on "
            f"{scores['frames']} frames ({out}/metrics.json, {out}/held_out.png)"
        )
