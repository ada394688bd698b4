"""Benchmark: Table I of CAS-GAN on the phantom — every translation method at the same budget
and seeds, scored against real angiograms and against the phantom's paired truth.

Usage: python benchmarks/translation.py DATASET [--methods cyclegan attentiongan cut]
           [--seeds 0 1 2] [--steps 1200] [--config configs/translate-tiny.yaml]
           [--work DIR] [--json OUT] [--markdown OUT]

DATASET is a curated dataset of a phantom archive written with `--pairs`, with its arterial
selection (e.g. `demo/dataset` after `make demo`). For each method and seed the script trains
`--steps` steps of `--config` on the training split (x = native mask frames, y = native arterial
frames), translates the test split's no-contrast twins of arterial frames, and evaluates them
(`angiosynth evaluate --translated`): FID, MMD x 10 (Gaussian kernel, median heuristic) and KID
of the translations against the test split's real native arterial frames; Dice and clDice of
each translation's vessel map (log difference to its input) against the phantom's vessel mask;
PSNR and SSIM against the true contrast frame; seconds per training step. The table gives the
mean and sample standard deviation over the seeds (GANs vary from seed to seed), then the
truth's own vessel scores (the ceiling of the vessel-map method) and the input's PSNR / SSIM
(no translation at all). Timings are wall-clock on this machine: run it alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from angiosynth.config import TranslateConfig, load_config
from angiosynth.data.translation import load_translation_data
from angiosynth.evaluation.translation import TranslationEvalOptions, evaluate_translation
from angiosynth.gan.inference import TranslateOptions, translate
from angiosynth.training.translate import train_translation

COLUMNS = ["fid", "mmd_x10", "kid", "dice", "cl_dice", "psnr", "ssim", "s_per_step"]


def run_one(dataset: Path, method: str, seed: int, config: TranslateConfig, work: Path) -> dict:
    """Trains, translates and evaluates one method at one seed; its row of measures."""
    train = config.train.model_copy(update={"seed": seed})
    config = config.model_copy(update={"train": train})
    run, translated, evaluation = (work / f"{method}-{seed}-{k}" for k in ("run", "out", "eval"))
    started = time.monotonic()
    result = train_translation(load_translation_data(dataset), method, config, run,
                               overwrite=True)  # fmt: skip
    train_s = time.monotonic() - started
    translate(run, dataset, translated, TranslateOptions(overwrite=True, device="cpu"))
    metrics = evaluate_translation(
        translated, dataset, evaluation, TranslationEvalOptions(device="cpu", seed=seed)
    )
    row = next(r for r in metrics["summary"] if r["set"] == "translation")
    extras = {r["set"]: r for r in metrics["summary"][1:]}
    return {
        "method": method, "seed": seed, **{k: row.get(k) for k in COLUMNS[:-1]},
        "s_per_step": result.seconds_per_step, "train_s": train_s,
        "ceiling": extras.get("truth (ceiling)"), "input": extras.get("input (no translation)"),
        "n_translated": row["n"], "n_real": row["n_real"],
    }  # fmt: skip


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Mean ± sd over seeds per method, then the ceiling and the untranslated input."""
    table = pd.DataFrame(rows)
    out = []
    for method, group in table.groupby("method", sort=False):
        cells = {"method": method, "seeds": len(group)}
        for column in COLUMNS:
            values = group[column].astype(float)
            sd = values.std(ddof=1) if len(values) > 1 else float("nan")
            cells[column] = f"{values.mean():.3g} ± {sd:.2g}"
        out.append(cells)
    for label in ("ceiling", "input"):
        reference = next((r[label] for r in rows if r[label]), None)
        if reference is not None:
            cells = {"method": f"{label} (phantom truth)" if label == "ceiling" else
                     "input, untranslated", "seeds": ""}  # fmt: skip
            for column in COLUMNS:
                value = reference.get(column)
                cells[column] = "" if value is None else f"{value:.3g}"
            out.append(cells)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--methods", nargs="+", default=["cyclegan", "attentiongan", "cut"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="[default: the config's]")
    parser.add_argument("--config", type=Path, default=Path("configs/translate-tiny.yaml"))
    parser.add_argument("--work", type=Path, default=None, help="Keep the runs here.")
    parser.add_argument("--json", type=Path, default=None, help="Write the rows as JSON.")
    parser.add_argument("--markdown", type=Path, default=None, help="Write the table.")
    args = parser.parse_args()
    config = load_config(args.config, TranslateConfig)
    if args.steps is not None:
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"max_steps": args.steps})}
        )
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows = []
        for method in args.methods:
            for seed in args.seeds:
                rows.append(run_one(args.dataset, method, seed, config, work))
                print(json.dumps({k: v for k, v in rows[-1].items()
                                  if k not in ("ceiling", "input")}), flush=True)  # fmt: skip
    table = summarise(rows)
    steps = config.train.max_steps
    print(
        f"\n{len(args.seeds)} seeds x {steps} steps of {args.config}, on {args.dataset}; "
        f"{rows[0]['n_translated']} translated test frames against {rows[0]['n_real']} real"
    )
    print(tabulate(table, headers="keys", tablefmt="github", showindex=False))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))
    if args.markdown:
        args.markdown.write_text(tabulate(table, headers="keys", tablefmt="github",
                                          showindex=False) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
