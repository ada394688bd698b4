"""Benchmark: time to write a phantom archive, and its frame counts per view.

Usage: python benchmarks/phantom.py [--patients 40] [--workers 2] [--size 512] [--repeats 1]
       [--pairs]

Prints a table with the wall time of each repeat (median quoted), seconds per patient, frames per
second, and the arterial frames per view (Table 1 layout) of the archive written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from angiosynth.config import PhantomConfig
from angiosynth.phantom.archive import write_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", action="store_true", help="also write the no-contrast twins")
    args = parser.parse_args()

    config = PhantomConfig(image_size=args.size)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "archive"
        for _ in range(args.repeats):
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            summary = write_archive(
                out, args.patients, args.seed, config, workers=args.workers, pairs=args.pairs
            )
            times.append(time.perf_counter() - start)
        truth = pd.read_parquet(out / "ground_truth.parquet")
        size_gb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e9

    median = statistics.median(times)
    print(
        f"phantom archive: {args.patients} patients, {args.size}x{args.size}, "
        f"{args.workers} workers, {os.cpu_count()} cores{', with pairs' if args.pairs else ''}"
    )
    print()
    print("| metric | value |")
    print("| --- | --- |")
    print(f"| wall time, median of {len(times)} (s) | {median:.1f} |")
    print(f"| all repeats (s) | {', '.join(f'{t:.1f}' for t in times)} |")
    print(f"| seconds per patient | {median / args.patients:.2f} |")
    print(f"| frames written per second | {summary.n_frames / median:.1f} |")
    print(
        f"| studies / series / frames | {summary.n_studies} / {summary.n_series} / "
        f"{summary.n_frames} |"
    )
    print(f"| archive size (GB) | {size_gb:.2f} |")
    print()
    print("| view | arterial frames | share (%) |")
    print("| --- | --- | --- |")
    total = max(summary.n_arterial_frames, 1)
    kept = truth[truth["is_arterial"] & truth["circulation"].isin(["anterior", "posterior"])]
    for view, n in summary.frames_per_view.items():
        print(f"| {view} | {n} | {100 * n / max(len(kept), 1):.1f} |")
    print(f"| all arterial (incl. excluded circulations) | {total} | |")


if __name__ == "__main__":
    main()
