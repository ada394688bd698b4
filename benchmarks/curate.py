"""Benchmark: curation throughput with 1 and 2 worker processes.

Usage: python benchmarks/curate.py [--patients 8] [--size 512] [--out-size 256] [--repeats 3]

Writes a phantom archive once (to a temporary directory), then times `curate` over it with 1 and
2 workers, each repeat into a fresh dataset directory, and prints a Markdown table: median wall
time, stored frames per second, series per second, and the speed-up of 2 over 1 worker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from angiosynth.config import PhantomConfig
from angiosynth.curation.curate import CurateOptions, curate
from angiosynth.curation.rules import DEFAULT_RULES
from angiosynth.phantom.archive import write_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8, help="patients in the phantom archive")
    parser.add_argument("--size", type=int, default=512, help="frame size of the archive (px)")
    parser.add_argument("--out-size", type=int, default=256, help="side of the stored frames")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per worker count")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="angiosynth-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_archive(
            root / "archive",
            args.patients,
            args.seed,
            PhantomConfig(image_size=args.size),
            workers=os.cpu_count() or 1,
        )
        write_s = time.perf_counter() - start
        dicom = root / "archive" / "dicom"
        n_files = sum(1 for p in dicom.rglob("*.dcm"))
        archive_mb = sum(p.stat().st_size for p in dicom.rglob("*.dcm")) / 1e6

        results = {}
        for workers in (1, 2):
            times = []
            for repeat in range(args.repeats):
                out = root / f"dataset-w{workers}-r{repeat}"
                options = CurateOptions(
                    size=args.out_size, workers=workers, seed=0, key_file=root / "key"
                )
                start = time.perf_counter()
                summary = curate(dicom, out, DEFAULT_RULES, options)
                times.append(time.perf_counter() - start)
            results[workers] = (times, summary)

    print(
        f"curate: {args.patients} patients, {n_files} files ({archive_mb:.0f} MB), "
        f"{args.size}x{args.size} -> {args.out_size}x{args.out_size}, "
        f"{os.cpu_count()} cores; archive written in {write_s:.1f} s"
    )
    _, summary = results[1]
    print(
        f"{summary.series} series, {summary.kept_series} kept, {summary.frames} frames stored; "
        f"median of {args.repeats} repeats"
    )
    print()
    print("| workers | median wall time (s) | all repeats (s) | frames/s | series/s | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = statistics.median(results[1][0])
    for workers, (times, summary) in results.items():
        median = statistics.median(times)
        print(
            f"| {workers} | {median:.2f} | {', '.join(f'{t:.2f}' for t in times)} | "
            f"{summary.frames / median:.1f} | {summary.series / median:.2f} | "
            f"{base / median:.2f}x |"
        )


if __name__ == "__main__":
    main()
