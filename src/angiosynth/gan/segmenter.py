"""The trained vessel segmenter on disk, and running it on whole frames: `angiosynth segment`.

RUN/segmenter/ holds model.safetensors (the weights by name) and config.json: the network's
widths and groups and the crops it was trained on. Frames of any size are segmented whole: the
UNet is fully convolutional, so a frame is padded by reflection to a multiple of `net.factor`,
segmented and cropped back.

`segment` writes, for a folder of images (searched recursively) or a curated dataset (the
native arterial frames of a split)::

    OUT/probabilities/<name>.png   vessel probability, 16-bit grayscale (65535 = 1)
    OUT/masks/<name>.png           probability > threshold, 8-bit (255 = vessel)
    OUT/segment.json               run, model hash, input, split, threshold, device, seconds and
                                   per image: output name, input, frame_id, vessel share

OUT is built under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from angiosynth.config import SegmenterConfig, SegmenterModelConfig
from angiosynth.curation.dataset import FRAMES_FILE, CuratedDataset
from angiosynth.data.images import IMAGE_SUFFIXES, read_image, write_png
from angiosynth.data.translation import DatasetImages, native_arterial_ids
from angiosynth.errors import AngiosynthError, InputNotFoundError, OptionError, OutputExistsError
from angiosynth.gan.frames import run_on_frames
from angiosynth.gan.inference import output_names
from angiosynth.gan.network_files import load_network
from angiosynth.models.segmenter import VesselUNet
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import (
    MODEL_CONFIG_FILE,
    MODEL_FILE,
    atomic_directory,
    save_tensors_atomic,
    write_json_atomic,
)
from angiosynth.runtime import resolve_device

SEGMENTER_DIR = "segmenter"
PROBABILITIES_DIR = "probabilities"
MASKS_DIR = "masks"
SETTINGS_FILE = "segment.json"
ARCHITECTURE = "vessel-unet"


class SegmenterFileError(AngiosynthError, ValueError):
    """A folder has no usable vessel segmenter (names the folder and the reason)."""


def save_segmenter(net: VesselUNet, config: SegmenterConfig, folder: Path) -> None:
    """Writes `net` and what rebuilds it (config.json: architecture, model, data) to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(net.state_dict(), folder / MODEL_FILE, metadata={"format": "pt"})
    model = {"channels": list(net.channels), "groups": net.groups}
    write_json_atomic(folder / MODEL_CONFIG_FILE, {
        "architecture": ARCHITECTURE, "model": model,
        "data": config.data.model_dump(mode="json"),
    })  # fmt: skip


def build_segmenter(settings: dict) -> VesselUNet:
    """The (untrained) network a segmenter config.json describes."""
    if settings.get("architecture") != ARCHITECTURE:
        raise ValueError(f"architecture {settings.get('architecture')!r} is not {ARCHITECTURE}")
    model = SegmenterModelConfig.model_validate(settings["model"])
    return VesselUNet(model.channels, model.groups)


def load_segmenter(run: Path) -> tuple[VesselUNet, dict]:
    """The segmenter of a run (RUN or RUN/segmenter), in eval mode, and its config.json.

    Raises:
        SegmenterFileError: the folder has no segmenter, or its files do not fit.
    """
    return load_network(
        run,
        SEGMENTER_DIR,
        build_segmenter,
        SegmenterFileError,
        "segmenter",
        "angiosynth train segmenter",
    )


def segment_frames(
    net: VesselUNet, frames: np.ndarray, batch: int = 8, device: torch.device | str | None = None
) -> np.ndarray:
    """Vessel probabilities of whole frames.

    Args:
        net: the segmenter (moved to `device` when one is given).
        frames: (N, H, W) float frames in [0, 1], any H and W.
        batch: frames per forward pass.
        device: where to run (None: where `net` is).

    Returns:
        (N, H, W) float32 vessel probabilities in [0, 1].
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"segment_frames takes (N, H, W) frames, got shape {frames.shape}")
    if device is not None:
        net.to(device)

    def call(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net(x).float())

    return run_on_frames(net, call, frames, net.factor, batch)


# --------------------------------------------------------------------------- `angiosynth segment`


@dataclass(frozen=True)
class SegmentOptions:
    """Settings of `segment`.

    Attributes:
        split: the split segmented when INPUT is a curated dataset.
        threshold: a pixel is vessel where its probability is above this.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        overwrite: replace an existing OUT.
    """

    split: str = "test"
    threshold: float = 0.5
    device: str = "auto"
    overwrite: bool = False


@dataclass(frozen=True)
class _Frame:
    name: str
    pixels: np.ndarray
    source: str
    frame_id: int | None


def segment(
    run: Path, source: Path, out: Path, options: SegmentOptions = SegmentOptions(),
    progress: Progress | None = None,
) -> dict:  # fmt: skip
    """Segments every frame of `source` with the segmenter of `run` into `out` (module
    docstring); returns what OUT/segment.json holds.

    Raises:
        SegmenterFileError: `run` has no usable segmenter.
        InputNotFoundError: `source` is missing or holds no images.
        DatasetError: a curated dataset without native frames or arterial frames in the split.
        OptionError: a threshold outside (0, 1).
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    run, source, out = Path(run), Path(source), Path(out)
    if not 0 < options.threshold < 1:
        raise OptionError(f"--threshold must lie in (0, 1), got {options.threshold}")
    net, _ = load_segmenter(run)
    device = resolve_device(options.device)
    net.to(device)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise OutputExistsError(f"{out}: exists and is not empty; use --overwrite")
    frames, count, dataset = _inputs(source, options.split)
    started, rows = time.monotonic(), []
    with atomic_directory(out) as building:
        for frame in tracked(frames, count, "segment", progress):
            probability = segment_frames(net, frame.pixels[None])[0]
            rows.append(_write(building, frame, probability, options.threshold))
        summary = {
            "run": str(run.resolve()), "model_hash": _weights_hash(run),
            "input": str(source.resolve()), "dataset": dataset,
            "split": options.split if dataset else None, "threshold": options.threshold,
            "device": str(device), "frames": len(rows),
            "seconds": round(time.monotonic() - started, 2), "images": rows,
        }  # fmt: skip
        write_json_atomic(building / SETTINGS_FILE, summary)
    return summary


def _inputs(source: Path, split: str) -> tuple[Iterator[_Frame], int, str | None]:
    """The frames of `source`, how many, and the dataset root when it is a curated dataset."""
    if not source.exists():
        raise InputNotFoundError(f"{source}: not found")
    if (source / FRAMES_FILE).is_file():
        dataset = CuratedDataset(source)
        dataset.require_native()
        ids = native_arterial_ids(dataset, split)
        return _dataset_frames(DatasetImages(dataset, ids), ids), len(ids), str(source.resolve())
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    root = source.parent if source.is_file() else source
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    if not images:
        raise InputNotFoundError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) to segment")
    names = output_names(root, images)
    frames = (
        _Frame(names[p], read_image(p)[0], p.relative_to(root).as_posix(), None) for p in images
    )
    return frames, len(images), None


def _dataset_frames(images: DatasetImages, frame_ids: np.ndarray) -> Iterator[_Frame]:
    for position, frame_id in enumerate(frame_ids):
        name = f"frame-{int(frame_id):07d}"
        yield _Frame(name, images.read([position])[0], f"frame_id:{int(frame_id)}", int(frame_id))


def _write(folder: Path, frame: _Frame, probability: np.ndarray, threshold: float) -> dict:
    """Writes one frame's probability map (16 bit) and mask (8 bit); its record."""
    mask = probability > threshold
    for sub, image, bits in ((PROBABILITIES_DIR, probability, 16), (MASKS_DIR, mask, 8)):
        target = folder / sub / f"{frame.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_png(target, image.astype(np.float32), bits)
    return {"output": f"{frame.name}.png", "input": frame.source, "frame_id": frame.frame_id,
            "vessel_share": round(float(mask.mean()), 6)}  # fmt: skip


def _weights_hash(run: Path) -> str:
    """First 16 hex digits of the SHA-256 of the segmenter's weights."""
    folder = run / SEGMENTER_DIR if (run / SEGMENTER_DIR).is_dir() else run
    return hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()[:16]
