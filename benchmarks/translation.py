"""Benchmark: Tables I and II of CAS-GAN on the phantom — every translation method (and, with
`--ablation`, every cell of CAS-GAN's DRL / VSGG / VSGL ablation) at the same budget and seeds,
scored against real angiograms and against the phantom's paired truth.

Usage: python benchmarks/translation.py DATASET [--methods cyclegan attentiongan cut casgan]
           [--ablation [CELL ...]] [--seeds 0 1 2] [--steps 600]
           [--config configs/translate-tiny.yaml] [--segmenter RUN] [--work DIR]
           [--json OUT [--resume]] [--markdown OUT]

DATASET is a curated dataset of a phantom archive written with `--pairs`, with its arterial
selection (e.g. `demo/dataset` after `make demo`). For each method (or ablation cell) and seed
the script trains `--steps` steps of `--config` on the training split (x = native mask frames,
y = native arterial frames), translates the test split's no-contrast twins of arterial frames,
and evaluates them (`angiosynth evaluate --translated`): FID, MMD x 10 (Gaussian kernel, median
heuristic) and KID of the translations against the test split's real native arterial frames;
Dice and clDice of each translation's vessel map (log difference to its input) against the
phantom's vessel mask; PSNR and SSIM against the true contrast frame; seconds per training step.

CAS-GAN's VSGL needs a vessel segmenter: `--segmenter RUN`, else one is trained first with the
config's `segmenter` section (its seconds and held-out Dice are printed). It also reads every
method's translations: seg_dice and seg_cl_dice score its masks of the translated frames
against the phantom's vessel masks (`evaluate --translated --segmenter`). The tables give the
mean and sample standard deviation over the seeds (GANs vary from seed to seed), then the
truth's own vessel scores (the ceiling of the vessel-map method) and the input's (no
translation at all). With `--json OUT` every run's row is written as soon as it is measured;
`--resume` skips the runs OUT already holds. Timings are wall-clock on this machine: run it
alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from angiosynth.config import TranslateConfig, load_config
from angiosynth.data.segmentation import dataset_segmentation
from angiosynth.data.translation import load_translation_data
from angiosynth.evaluation.morphology import vessel_mask
from angiosynth.evaluation.segmentation import record_held_out
from angiosynth.evaluation.translation import TranslationEvalOptions, evaluate_translation
from angiosynth.gan.inference import TranslateOptions, translate
from angiosynth.training.segmenter import train_segmenter
from angiosynth.training.translate import train_translation

COLUMNS = ["fid", "mmd_x10", "kid", "dice", "cl_dice", "seg_dice", "seg_cl_dice", "psnr", "ssim",
           "s_per_step"]  # fmt: skip
TABLE_II_COLUMNS = ["fid", "dice", "cl_dice", "seg_dice", "seg_cl_dice"]
#: Table II's cells in the paper's order: (DRL, VSGG, VSGL).
CELLS = [(drl, vsgg, vsgl) for drl, vsgg, vsgl in itertools.product((False, True), repeat=3)]


def cell_config(config: TranslateConfig, drl: bool, vsgg: bool, vsgl: bool) -> TranslateConfig:
    """`config` with CAS-GAN's modules switched as given."""
    casgan = config.casgan.model_copy(update={"drl": drl, "vsgg": vsgg, "vsgl": vsgl})
    return config.model_copy(update={"casgan": casgan})


def run_one(
    dataset: Path, method: str, seed: int, config: TranslateConfig, work: Path, segmenter: Path
) -> dict:
    """Trains, translates and evaluates one method (CAS-GAN: one cell) at one seed; its row
    (the segmenter guides CAS-GAN's VSGL and reads every method's translations)."""
    train = config.train.model_copy(update={"seed": seed})
    config = config.model_copy(update={"train": train})
    name = method if method != "casgan" else f"casgan[{config.casgan.cell}]"
    run, translated, evaluation = (work / f"{name}-{seed}-{k}" for k in ("run", "out", "eval"))
    started = time.monotonic()
    result = train_translation(
        load_translation_data(dataset), method, config, run, overwrite=True,
        segmenter=segmenter if method == "casgan" and config.casgan.vsgl else None,
    )  # fmt: skip
    train_s = time.monotonic() - started
    translate(run, dataset, translated, TranslateOptions(overwrite=True, device="cpu"))
    options = TranslationEvalOptions(device="cpu", seed=seed, segmenter=str(segmenter))
    metrics = evaluate_translation(translated, dataset, evaluation, options)
    row = next(r for r in metrics["summary"] if r["set"] == "translation")
    extras = {r["set"]: r for r in metrics["summary"][1:]}
    return {
        "method": name, "seed": seed, **{k: row.get(k) for k in COLUMNS[:-1]},
        "s_per_step": result.seconds_per_step, "train_s": train_s,
        "ceiling": extras.get("truth (ceiling)"), "input": extras.get("input (no translation)"),
        "n_translated": row["n"], "n_real": row["n_real"],
    }  # fmt: skip


def mean_sd(values: pd.Series) -> str:
    """Mean ± sample sd as text (sd nan for one seed)."""
    values = values.astype(float)
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.3g} ± {sd:.2g}"


def summarise(rows: list[dict], methods: list[str]) -> pd.DataFrame:
    """Table I: mean ± sd over seeds per method, then the ceiling and the untranslated input."""
    table = pd.DataFrame(rows)
    out = []
    for method in methods:
        group = table[table["method"] == method]
        if group.empty:
            continue
        cells = {"method": method, "seeds": len(group)}
        out.append(cells | {column: mean_sd(group[column]) for column in COLUMNS})
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


def ablation_table(rows: list[dict]) -> pd.DataFrame:
    """Table II: per cell (the paper's order), FID, Dice and clDice (mean ± sd over seeds) and
    the difference of mean FID to the full model."""
    table = pd.DataFrame(rows)
    means = table.groupby("method")["fid"].mean()
    full = means.get("casgan[DRL+VSGG+VSGL]")
    out = []
    for index, cell in enumerate(CELLS, start=1):
        name = f"casgan[{cell_name(cell)}]"
        group = table[table["method"] == name]
        if group.empty:
            continue
        marks = {k: "✓" if on else "" for k, on in zip(("DRL", "VSGG", "VSGL"), cell, strict=True)}
        entry = {"index": index, **marks, "seeds": len(group)}
        entry |= {column: mean_sd(group[column]) for column in TABLE_II_COLUMNS}
        entry["Δ fid"] = "" if full is None else f"{means[name] - full:+.3g}"
        out.append(entry)
    return pd.DataFrame(out)


def cell_name(cell: tuple[bool, bool, bool]) -> str:
    """The name `CASGANConfig.cell` gives the cell."""
    return "+".join(n for n, on in zip(("DRL", "VSGG", "VSGL"), cell, strict=True) if on) or "none"


def ensure_segmenter(dataset: Path, config: TranslateConfig, given: Path | None, work: Path):
    """The segmenter run VSGL uses: `given`, else one trained now into WORK/segmenter."""
    if given is not None:
        return given
    run = work / "segmenter"
    started = time.monotonic()
    train_segmenter(dataset_segmentation(dataset, "train", vessel_mask), config.segmenter, run,
                    overwrite=True)  # fmt: skip
    scores = record_held_out(run, dataset_segmentation(dataset, "val", vessel_mask))
    print(json.dumps({"segmenter": str(run), "seconds": round(time.monotonic() - started, 1),
                      "held_out_dice": scores["dice"], "held_out_cl_dice": scores["cl_dice"]}),
          flush=True)  # fmt: skip
    return run


def plan(methods: list[str], ablation: list[str] | None) -> list[tuple[str, tuple | None]]:
    """(method, CAS-GAN cell or None) for every run, the full CAS-GAN once; `ablation` names
    the cells to run (empty: all 8; None: none)."""
    runs = [(m, (True, True, True) if m == "casgan" else None) for m in methods]
    if ablation is not None:
        names = {cell_name(cell): cell for cell in CELLS}
        if unknown := [n for n in ablation if n not in names]:
            raise SystemExit(f"--ablation: unknown cells {unknown}; cells are {list(names)}")
        chosen = [names[n] for n in ablation] if ablation else CELLS
        runs += [("casgan", cell) for cell in chosen if ("casgan", cell) not in runs]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--methods", nargs="*",
                        default=["cyclegan", "attentiongan", "cut", "casgan"])  # fmt: skip
    parser.add_argument("--ablation", nargs="*", default=None, metavar="CELL",
                        help="Also CAS-GAN's ablation cells (none, VSGL, ..., "
                        "DRL+VSGG+VSGL; no names: all 8).")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="[default: the config's]")
    parser.add_argument("--config", type=Path, default=Path("configs/translate-tiny.yaml"))
    parser.add_argument("--segmenter", type=Path, default=None, help="A `train segmenter` run.")
    parser.add_argument("--work", type=Path, default=None, help="Keep the runs here.")
    parser.add_argument("--json", type=Path, default=None, help="Write the rows as JSON.")
    parser.add_argument("--resume", action="store_true", help="Skip the runs --json holds.")
    parser.add_argument("--markdown", type=Path, default=None, help="Write the tables.")
    args = parser.parse_args()
    config = load_config(args.config, TranslateConfig)
    if args.steps is not None:
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"max_steps": args.steps})}
        )
    rows = json.loads(args.json.read_text()) if args.resume and args.json.is_file() else []
    done = {(r["method"], r["seed"]) for r in rows}
    runs = plan(args.methods, args.ablation)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        segmenter = ensure_segmenter(args.dataset, config, args.segmenter, work)
        for (method, cell), seed in itertools.product(runs, args.seeds):
            name = method if cell is None else f"casgan[{cell_name(cell)}]"
            if (name, seed) in done:
                continue
            cfg = config if cell is None else cell_config(config, *cell)
            rows.append(run_one(args.dataset, method, seed, cfg, work, segmenter))
            print(json.dumps({k: v for k, v in rows[-1].items()
                              if k not in ("ceiling", "input")}), flush=True)  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1, default=float))
    report(rows, args, config)


def report(rows: list[dict], args, config: TranslateConfig) -> None:
    """Prints Table I (and Table II with --ablation) and writes --markdown."""
    full = f"casgan[{cell_name((True, True, True))}]"
    table_i = summarise(rows, [full if m == "casgan" else m for m in args.methods])
    text = [
        f"{len(args.seeds)} seeds x {config.train.max_steps} steps of {args.config}, on "
        f"{args.dataset}; {rows[0]['n_translated']} translated test frames against "
        f"{rows[0]['n_real']} real",
        "",
        "Table I",
        tabulate(table_i, headers="keys", tablefmt="github", showindex=False),
    ]
    if args.ablation is not None:
        table_ii = ablation_table(rows)
        text += ["", "Table II", tabulate(table_ii, headers="keys", tablefmt="github",
                                          showindex=False)]  # fmt: skip
    print("\n" + "\n".join(text))
    if args.markdown:
        args.markdown.write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
