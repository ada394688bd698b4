"""`angiosynth phase`: train the arterial-phase classifier and select arterial-phase frames."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from angiosynth.cli._common import (
    config_with_overrides,
    echo_above_bar,
    fail,
    one_line_errors,
    progress_bar,
)
from angiosynth.config import PhaseTrainConfig
from angiosynth.curation.arterial import DEFAULT_MARGIN, SelectOptions, select_arterial
from angiosynth.training.phase import PhaseScorer, train_phase_classifier

app = typer.Typer(
    help="Arterial-phase classifier (paper §2.2): train on annotated series, select frames.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

_DEFAULTS = PhaseTrainConfig()
_SELECT = SelectOptions()
#: The scoring defaults of `phase select` (`training.phase.PhaseScorer`).
_SCORER = inspect.signature(PhaseScorer).parameters


@app.command("train")
@one_line_errors
def train_command(
    dataset: Path = typer.Argument(..., help="Curated dataset directory (`angiosynth curate`)."),
    annotations: Path = typer.Option(
        ..., "--annotations", "-a", help="CSV with series_uid, frame_index (0-based) columns."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    config: Path = typer.Option(None, "--config", "-c", dir_okay=False,
                                help="YAML of PhaseTrainConfig settings (configs/phase.yaml); "
                                "options given with another value than their default override "
                                "it."),
    epochs: int = typer.Option(None, "--epochs", min=1,
                               help="Training epochs [default: enough for --steps]."),
    steps: int = typer.Option(_DEFAULTS.min_steps, "--steps", min=1,
                              help="Optimiser steps to aim for when --epochs is not given."),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, "--batch-size", min=1),
    lr: float = typer.Option(_DEFAULTS.lr, "--lr", min=0, help="Peak learning rate (AdamW)."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Seed of weights, order, holdout."),
    workers: int = typer.Option(_DEFAULTS.workers, "--workers", "-j", min=0,
                                help="DataLoader processes (0: read in the main process)."),
    device: str = typer.Option(_DEFAULTS.device, "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option(_DEFAULTS.mixed_precision, "--precision",
                                  help="auto (bf16 on AMX CPUs and bf16 GPUs, else fp32), fp32 "
                                  "or bf16."),
    balance: str = typer.Option(_DEFAULTS.balance, "--balance",
                                help="pos_weight (BCE weight negatives/positives), sampler "
                                "(balanced draws) or none."),
    positive_window: float = typer.Option(_DEFAULTS.positive_window_s, "--positive-window", min=0,
                                          help="Seconds around the annotated frame that are "
                                          "positive too (0: the annotated frame only)."),
    negative_gap: float = typer.Option(_DEFAULTS.negative_gap_s, "--negative-gap", min=0,
                                       help="Frames this many seconds or more from the "
                                       "annotated frame are negative."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model in OUT."),
) -> None:  # fmt: skip
    """Train the arterial-phase classifier (ResNet-18 from scratch, 1 x 128 x 128 in [0, 1]).

    **Labels** (frames matched to annotations by series_uid and frame_index): the annotated
    frame and the non-mask frames within `--positive-window` seconds (0.5) of it are positive;
    mask frames and frames at least `--negative-gap` seconds (1.0) from it are negative; frames
    in between are not used. `--positive-window 0 --negative-gap 1.5` is the stricter rule of
    one positive per series; on the phantom it leaves the frames next to the arterial phase
    untrained and selects them (precision about 0.7 instead of 0.9).

    **Balance**: BCE's pos_weight = negatives / positives (`--balance pos_weight`).

    **Holdout**: patient-disjoint; the dataset's val + test patients when they hold at least
    5 annotated series (and train does too), else 20 % of annotated patients drawn with
    `--seed`. Precision, recall, accuracy (threshold 0.5) and ROC AUC are reported.

    Writes OUT/model.safetensors, config.json, metrics.json, log.jsonl, labels.parquet.
    The same seed and `--workers` give the same weights on the same machine. About 2 minutes
    for 40 annotated series on 2 CPU cores with AMX (bf16).
    """
    settings = dict(
        epochs=epochs, min_steps=steps, batch_size=batch_size, lr=lr, seed=seed, workers=workers,
        device=device, mixed_precision=precision, balance=balance,
        positive_window_s=positive_window, negative_gap_s=negative_gap,
    )  # fmt: skip
    options = config_with_overrides(PhaseTrainConfig, config, settings)
    result = train_phase_classifier(
        dataset, annotations, out, options, progress_bar, _print_epoch, overwrite
    )
    labels, split = result.labels, result.holdout
    typer.echo(
        f"labels: {labels.positives} positive, {labels.negatives} negative, {labels.ambiguous} "
        f"unused frames of {labels.annotated_series} annotated series "
        f"({labels.unmatched_series} annotations without a matching frame)"
    )
    typer.echo(
        f"holdout ({split['source']}): {split['holdout']['patients']} patients, "
        f"{split['holdout']['series']} series; train: {split['train']['patients']} patients, "
        f"{split['train']['series']} series"
    )
    typer.echo(f"holdout at 0.5: {_scores(result.metrics['holdout'])}")
    calibrated = result.metrics["selection"]
    if calibrated is None:
        typer.echo(f"selection margin: no holdout series with positive and negative frames; "
                   f"phase select uses {DEFAULT_MARGIN:g}")  # fmt: skip
    else:
        typer.echo(
            f"selection margin (holdout-calibrated): {calibrated['margin']:.2f} (median gaps "
            f"below the series' peak logit: positives {calibrated['positive_gap_median']:.2f}, "
            f"negatives {calibrated['negative_gap_median']:.2f}; {calibrated['series']} series)"
        )
    typer.echo(f"model: {out} ({result.seconds:.0f} s)")


@app.command("select")
@one_line_errors
def select_command(
    dataset: Path = typer.Argument(..., help="Curated dataset directory."),
    model: Path = typer.Option(..., "--model", "-m", help="Model directory (`phase train`)."),
    per_series: int = typer.Option(None, "--per-series", "-k", min=1,
                                   help="Keep the K most probable frames of each series."),
    threshold: float = typer.Option(_SELECT.threshold, "--threshold", "-t", min=0, max=1,
                                    help="Keep frames with probability >= P."),
    margin: str = typer.Option(_SELECT.margin, "--margin",
                               help="... and a logit within D of the series' highest "
                               "(auto: the margin calibrated on the model's holdout)."),
    no_margin: bool = typer.Option(False, "--no-margin", help="Use the threshold alone."),
    contiguous: bool = typer.Option(_SELECT.contiguous, "--contiguous/--any-frames",
                                    help="Keep only the run of frames around each series' "
                                    "peak, or every frame that passes."),
    batch_size: int = typer.Option(_SCORER["batch_size"].default, "--batch-size", min=1),
    workers: int = typer.Option(_SCORER["workers"].default, "--workers", "-j", min=0),
    device: str = typer.Option(_SCORER["device"].default, "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option(_SCORER["precision"].default, "--precision",
                                  help="auto, fp32 or bf16."),
    truth: Path = typer.Option(None, "--truth", dir_okay=False,
                               help="Phantom ground_truth.parquet [default: beside the curated "
                               "archive, from DATASET/curation.json, when present]."),
) -> None:  # fmt: skip
    """Select arterial-phase frames of every kept (anterior/posterior) series.

    Scores all stored frames of the kept series and keeps, per series, the frames with
    probability >= `--threshold` (0.5) whose logit log(p / (1 - p)) is within `--margin` of the
    highest logit of their series and that form one unbroken run around the series' most
    probable frame (`--any-frames` drops this), or the `--per-series` K most probable frames.
    The default margin (auto) is the model's own, calibrated on its holdout series by `phase
    train`: halfway between how far below a series' peak its positive frames (within 0.5 s of
    the annotated frame) and its nearest negative frame (1.0 s away) score. The per-series
    margin follows each series' own scale and, on the phantom, raised precision at equal
    recall over any fixed threshold; a fixed K cannot follow series whose arterial phase spans
    2 to 7 frames. Writes DATASET/arterial.parquet (frame_id, series_uid, patient_id,
    split, circulation, plane, primary_angle, secondary_angle, view, probability, prompt),
    DATASET/phase_scores.parquet (every frame's probability) and DATASET/phase_metrics.json,
    and redraws the report (Table 1 over the selected frames). With the phantom's ground truth,
    precision / recall / accuracy of the selection against its arterial phase are reported.
    """
    if per_series is not None and (threshold != _SELECT.threshold or no_margin):
        fail("--per-series excludes --threshold and --no-margin; give one rule")
    options = SelectOptions(
        per_series=per_series,
        threshold=threshold,
        margin=None if no_margin else _margin(margin),
        contiguous=contiguous,
        truth=truth,
    )
    scorer = PhaseScorer(model, device, precision, batch_size, workers)
    result = select_arterial(dataset, scorer, options, progress_bar)
    typer.echo(
        f"selected {result.selected} of {result.frames} frames in {result.series} series "
        f"({result.metrics['selection']['rule']}) -> {dataset / 'arterial.parquet'}"
    )
    if result.without_prompt:
        typer.echo(f"  {result.without_prompt} selected frames have no prompt (plane not A/B)")
    truth_metrics = result.metrics.get("ground_truth")
    if truth_metrics:
        typer.echo(f"vs ground truth, selection: {_scores(truth_metrics['selection'])}")
        unseen = truth_metrics.get("selection_unseen_series")
        if unseen:
            typer.echo(f"  series not used in training: {_scores(unseen)}")
        typer.echo(f"  classifier at 0.5: {_scores(truth_metrics['classifier_at_0.5'])}")
    if "holdout" in result.metrics:
        typer.echo(f"model holdout at 0.5: {_scores(result.metrics['holdout'])}")
    typer.echo(f"report: {dataset / 'report.md'}")


def _margin(text: str) -> float | str:
    """--margin: "auto" or a number (SelectOptions checks the range)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        fail(f"--margin must be a number >= 0 or auto, got {text!r}")


def _print_epoch(record: dict) -> None:
    echo_above_bar(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
               f"holdout {_scores(record['holdout'])} ({record['seconds']:.0f} s)")  # fmt: skip


def _scores(metrics: dict) -> str:
    names = {"precision": "precision", "recall": "recall", "accuracy": "accuracy",
             "roc_auc": "AUC"}  # fmt: skip
    parts = []
    for key, name in names.items():
        if key in metrics:
            value = metrics[key]
            parts.append(f"{name} {'n/a' if value is None else f'{value:.3f}'}")
    return ", ".join(parts)
