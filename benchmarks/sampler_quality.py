"""Benchmark: sample quality against sampling cost, per sampler, on a trained model.

Usage: python benchmarks/sampler_quality.py [--run demo/ldm] [--real demo/dataset]
           [--view-model demo/eval/view-classifier] [--split test] [--n 50] [--guidance G]
           [--samplers ddpm-1000 ddim-50 ddim-20 dpmpp-20 dpmpp-10] [--quick] [--json OUT]

For each sampler (name-steps) the same images are drawn: `--n` per condition for the four
conditions (`plan_samples(design="conditions")`, seeds `--seed`, `--seed` + 1, ...), with
classifier-free guidance `--guidance` (default: the run's `sample.guidance`). Measured:

- seconds: wall-clock time of `LatentDiffusion.sample` over all images in batches of `--batch`
  (the VAE decode included, the features not; after one untimed 2-step call), and images/s;
- NFE/image: network evaluations per image, the sampler's timesteps x 2 when guidance != 1;
- FID of the samples (8-bit quantised, as the PNG files of `angiosynth sample`) against the
  arterial frames of `--split` (seeded subsample of `--max-real`), with the feature protocol of
  `angiosynth evaluate` (real frames through the samples' size first), its bootstrap median and
  95 % interval (`--bootstrap` draws of both sets);
- condition accuracy: the share of samples the view classifier labels as prompted, overall and
  per condition.

The final line says whether the 20-step samplers' FID lies inside ddpm-1000's bootstrap interval
(the target: the paper's 1000-step quality at 20 steps). Sets smaller than 2048 images have
rank-deficient covariances, so their FID is biased upwards and comparable only between equal
sizes: here every sampler has the same sample count and the same real set. The real-set
features are cached under `--cache-dir` (never inside the dataset). Without a view classifier
at `--view-model` one is trained into a temporary folder (`--view-steps` steps).
`--quick`: `--n 8` and no ddpm-1000 (unless given in `--samplers`).
On a machine shared with other jobs, `--threads 1` keeps the timings from collapsing (the small
network calls of the tiny model wait on OpenMP barriers while other processes hold the cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tabulate import tabulate

from angiosynth.conditions import CONDITIONS
from angiosynth.config import SAMPLERS as SAMPLER_NAMES
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.diffusion.pipeline import LatentDiffusion
from angiosynth.diffusion.sampling import SampleRequest, plan_samples
from angiosynth.diffusion.schedulers import sampling_scheduler
from angiosynth.evaluation import condition, metrics
from angiosynth.evaluation.evaluate import (
    EvaluateOptions,
    frame_features,
    real_frame_features,
    subsample_rows,
)
from angiosynth.evaluation.features import FEATURE_DIM
from angiosynth.models.classifiers import ViewClassifier, load_view_classifier
from angiosynth.runfiles import write_json_atomic

SAMPLERS = ("ddpm-1000", "ddim-50", "ddim-20", "dpmpp-20", "dpmpp-10")
REFERENCE = "ddpm-1000"
TARGET_STEPS = 20
QUICK_N = 8
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "angiosynth-sampler-quality"


@dataclass(frozen=True)
class Result:
    """Cost and quality of one sampler."""

    sampler: str
    steps: int
    nfe: int
    seconds: float
    images: int
    fid: float
    bootstrap: dict
    accuracy: dict

    @property
    def label(self) -> str:
        return f"{self.sampler}-{self.steps}"


def parse_sampler(spec: str) -> tuple[str, int]:
    """'dpmpp-20' -> ('dpmpp', 20); argparse error for anything else."""
    name, _, steps = spec.partition("-")
    if name not in SAMPLER_NAMES or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected NAME-STEPS with NAME one of {', '.join(SAMPLER_NAMES)}"
        )
    return name, int(steps)


def network_evaluations(pipe: LatentDiffusion, sampler: str, steps: int, guidance: float) -> int:
    """Network evaluations per image: one per timestep, two under guidance."""
    scheduler = sampling_scheduler(sampler, pipe.config.diffusion)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps) * (1 if guidance == 1.0 else 2)


# --- inputs -------------------------------------------------------------------------------------


def real_set(root: Path, options: EvaluateOptions) -> tuple[pd.DataFrame, np.ndarray]:
    """The arterial frames (with a prompt) of the split, subsampled as `angiosynth evaluate`
    does: (rows, (M, S, S) float frames in [0, 1])."""
    dataset = CuratedDataset(root)
    rows = dataset.arterial()
    rows = rows[rows["prompt"].notna()]
    rows = subsample_rows(rows[rows["split"] == options.split], options.max_real, options.seed)
    if len(rows) < 2:
        raise SystemExit(f"{root}: fewer than 2 arterial frames in split {options.split!r}")
    return rows, dataset.read(rows["frame_id"].to_numpy())


def view_classifier(
    path: Path, real: Path, size: int, steps: int, seed: int
) -> tuple[ViewClassifier, dict, Path]:
    """The view classifier at `path`, or one trained through `size` px into a temporary folder."""
    if not (path / "model.safetensors").is_file():
        from angiosynth.config import ViewTrainConfig
        from angiosynth.training.view import train_view_classifier

        missing = path
        path = Path(tempfile.mkdtemp(prefix="angiosynth-view-")) / "view-classifier"
        print(f"{missing}: no view classifier; training one on {real} ({size} px) -> {path}")
        options = ViewTrainConfig(min_steps=steps, source_size=size, seed=seed, device="cpu")
        train_view_classifier(real, path, options)
    model, config = load_view_classifier(path)
    source = config["input"].get("source_size")
    if source is not None and source != size:
        print(f"warning: {path} was trained through {source} px frames, samples are {size} px")
    return model, config, path


# --- one sampler --------------------------------------------------------------------------------


def draw(
    pipe: LatentDiffusion,
    requests: list[SampleRequest],
    sampler: str,
    steps: int,
    guidance: float,
    batch: int,
) -> tuple[np.ndarray, float]:
    """The images of `requests`, 8-bit quantised, as (N, H, W) float32 in [0, 1]; and the
    seconds `sample` took."""
    images = []
    start = time.perf_counter()
    for i in range(0, len(requests), batch):
        part = requests[i : i + batch]
        out = pipe.sample(
            [r.prompt for r in part], [r.seed for r in part], sampler, steps, guidance
        )
        images.append(out[:, 0].numpy())
    seconds = time.perf_counter() - start
    frames = np.concatenate(images)
    return (np.round(frames * 255) / 255).astype(np.float32), seconds


def warm_up(pipe: LatentDiffusion, requests: list[SampleRequest], guidance: float) -> None:
    """One untimed 2-step call at the batch shape (allocations, kernels), out of the timings."""
    pipe.sample([r.prompt for r in requests], [r.seed for r in requests], "dpmpp", 2, guidance)


def measure(
    pipe: LatentDiffusion,
    spec: tuple[str, int],
    requests: list[SampleRequest],
    real_features: np.ndarray,
    classifier: ViewClassifier,
    args: argparse.Namespace,
    options: EvaluateOptions,
) -> Result:
    """Draws the images with one sampler and scores them."""
    sampler, steps = spec
    frames, seconds = draw(pipe, requests, sampler, steps, args.guidance, args.batch)
    fake_features = frame_features(frames, options, None, None, f"{sampler}-{steps}")
    logits, _ = condition.classify(classifier, frames)
    requested = np.array([r.condition for r in requests], dtype=object)
    return Result(
        sampler=sampler,
        steps=steps,
        nfe=network_evaluations(pipe, sampler, steps, args.guidance),
        seconds=seconds,
        images=len(frames),
        fid=metrics.fid(real_features, fake_features),
        bootstrap=metrics.bootstrap_fid(
            real_features, fake_features, draws=args.bootstrap, seed=args.seed
        ),
        accuracy=condition.condition_accuracy(requested, logits),
    )


# --- report -------------------------------------------------------------------------------------


def result_rows(results: list[Result]) -> list[list]:
    rows = []
    for r in results:
        boot = r.bootstrap
        rows.append(
            [
                r.sampler,
                r.steps,
                r.nfe,
                f"{r.seconds:.1f}",
                f"{r.images / r.seconds:.2f}",
                f"{r.fid:.2f}",
                f"{boot['median']:.2f} [{boot['low']:.2f}, {boot['high']:.2f}]",
                f"{r.accuracy['overall']:.3f}",
            ]
        )
    return rows


def accuracy_rows(results: list[Result]) -> list[list]:
    return [
        [r.label, *(f"{r.accuracy['per_condition'].get(c, float('nan')):.3f}" for c in CONDITIONS)]
        for r in results
    ]


def verdict(results: list[Result]) -> str:
    """Whether the 20-step samplers' FID lies inside the reference's bootstrap interval."""
    by_label = {r.label: r for r in results}
    targets = [r for r in results if r.steps == TARGET_STEPS]
    if REFERENCE not in by_label:
        return f"no {REFERENCE} in this run: no reference interval for the {TARGET_STEPS}-step FID"
    if not targets:
        return f"no {TARGET_STEPS}-step sampler in this run"
    ref = by_label[REFERENCE].bootstrap
    parts = [
        f"{r.label} FID {r.fid:.2f} {'inside' if ref['low'] <= r.fid <= ref['high'] else 'OUTSIDE'}"
        for r in targets
    ]
    return (
        f"{TARGET_STEPS}-step samplers against {REFERENCE}'s bootstrap 95 % interval "
        f"[{ref['low']:.2f}, {ref['high']:.2f}]: {'; '.join(parts)}"
    )


def print_counts(requests: list[SampleRequest], rows: pd.DataFrame, split: str) -> None:
    per_condition = len(requests) // len(CONDITIONS)
    views = rows["view"].value_counts()
    real = ", ".join(f"{v} {int(views.get(v, 0))}" for v in (*CONDITIONS, "Others"))
    print(
        f"samples per sampler: {len(requests)} ({per_condition} per condition, seeds "
        f"{requests[0].seed}..{requests[-1].seed}); real frames ({split}): {len(rows)} ({real})"
    )
    notes = [
        metrics.rank_warning(len(requests), FEATURE_DIM, "synthetic"),
        metrics.rank_warning(len(rows), FEATURE_DIM, f"real {split}"),
    ]
    for note in filter(None, notes):
        print(f"note: {note}")


def to_json(results: list[Result], args: argparse.Namespace, extra: dict) -> dict:
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings["samplers"] = [f"{name}-{steps}" for name, steps in args.samplers]
    return {
        "settings": settings,
        **extra,
        "results": [
            {
                "sampler": r.label,
                "nfe_per_image": r.nfe,
                "seconds": r.seconds,
                "images": r.images,
                "fid": r.fid,
                "fid_bootstrap": r.bootstrap,
                "condition_accuracy": r.accuracy["overall"],
                "condition_accuracy_per_condition": r.accuracy["per_condition"],
            }
            for r in results
        ],
        "verdict": verdict(results),
    }


def report(results: list[Result], n_samples: int, n_real: int) -> None:
    """Prints the tables, the small-set caveat and the verdict."""
    print()
    headers = ["sampler", "steps", "NFE/image", "seconds", "images/s", "FID",
               "FID median [95 % interval]", "condition accuracy"]  # fmt: skip
    print(tabulate(result_rows(results), headers=headers, tablefmt="github", disable_numparse=True))
    print()
    print("condition accuracy per prompted condition:")
    print()
    headers = ["sampler", *CONDITIONS]
    print(tabulate(accuracy_rows(results), headers=headers, tablefmt="github"))
    print()
    print(
        f"FID of {n_samples} samples against {n_real} real frames: below {FEATURE_DIM} "
        "images the covariances are rank-deficient, so these FIDs are biased upwards and "
        "comparable only between sets of equal sizes (as the rows above are), not with FIDs "
        "of other sample counts."
    )
    print(verdict(results))


# --- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("demo/ldm"), help="a `train ldm` run")
    parser.add_argument("--real", type=Path, default=Path("demo/dataset"), help="curated dataset")
    parser.add_argument(
        "--view-model", type=Path, default=Path("demo/eval/view-classifier"), help="classifier"
    )
    parser.add_argument("--split", default="test", help="split of the real frames")
    parser.add_argument("--n", type=int, help="images per condition (default 50; --quick 8)")
    parser.add_argument("--samplers", type=parse_sampler, nargs="+", help="NAME-STEPS ...")
    parser.add_argument("--guidance", type=float, help="default: the run's sample.guidance")
    parser.add_argument("--batch", type=int, help="images per sample call (default: the run's)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap draws of FID")
    parser.add_argument("--max-real", type=int, default=5000, help="at most this many real")
    parser.add_argument("--seed", type=int, default=0, help="first image seed; bootstrap seed")
    parser.add_argument("--view-steps", type=int, default=300, help="steps if one is trained")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="real features")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--quick", action="store_true", help=f"--n {QUICK_N}, no {REFERENCE}")
    args = parser.parse_args()
    if args.n is None:
        args.n = QUICK_N if args.quick else 50
    if args.samplers is None:
        specs = [s for s in SAMPLERS if not (args.quick and s == REFERENCE)]
        args.samplers = [parse_sampler(s) for s in specs]
    return args


def main() -> None:
    # torch.jit.load of the shipped network: a deprecation notice, not a problem here
    warnings.filterwarnings("ignore", r"`torch\.jit\.", FutureWarning)
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pipe = LatentDiffusion.load(args.run)
    size = pipe.config.data.image_size
    args.guidance = pipe.config.sample.guidance if args.guidance is None else args.guidance
    args.batch = args.batch or pipe.config.sample.batch_size
    options = EvaluateOptions(split=args.split, max_real=args.max_real, seed=args.seed)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
        f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"model {args.run} ({pipe.model_hash}), {size}x{size} samples, guidance "
        f"{args.guidance:g}, batch {args.batch}"
    )
    requests = plan_samples(seed=args.seed, n=args.n, design="conditions")
    rows, frames = real_set(args.real, options)
    real_features, cached = real_frame_features(args.cache_dir, frames, options, size, None, "real")
    print(f"real features: {'read from' if cached else 'written to'} {args.cache_dir}")
    classifier, _, view_path = view_classifier(
        args.view_model, args.real, size, args.view_steps, args.seed
    )
    print_counts(requests, rows, args.split)

    warm_up(pipe, requests[: args.batch], args.guidance)
    results = []
    for spec in args.samplers:
        result = measure(pipe, spec, requests, real_features, classifier, args, options)
        print(f"  {result.label}: {result.seconds:.1f} s, FID {result.fid:.2f}", flush=True)
        results.append(result)

    report(results, len(requests), len(rows))
    if args.json:
        extra = {"model_hash": pipe.model_hash, "view_model": str(view_path), "n_real": len(rows)}
        write_json_atomic(args.json, to_json(results, args, extra))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
