"""Frames of a curated dataset as inputs of the frame classifiers (phase and view).

The classifiers see single-channel 128 x 128 frames in [0, 1] (paper §4.2), resized with area
averaging when shrinking and bilinear interpolation when enlarging, augmented for training by
a random crop, a horizontal flip and an intensity jitter.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from angiosynth.curation.dataset import CuratedDataset

#: Side of the classifiers' square input frames (paper §4.2: 128 x 128 in [0, 1]).
INPUT_SIZE = 128


def resize_frames(frames: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Resizes (N, 1, S, S) frames to (N, 1, size, size): area averaging when shrinking,
    bilinear when enlarging, unchanged when S == size."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    if frames.shape[-1] > size:
        return F.interpolate(frames, size=(size, size), mode="area")
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)


class IntensityJitter:
    """Random gain, offset and gamma of a (..., H, W) image in [0, 1]: x -> clip(g x^γ + b).

    Draws from torch's global generator (seeded per DataLoader worker), so runs repeat.

    Args:
        gain: g is uniform in [1 - gain, 1 + gain].
        offset: b is uniform in [-offset, offset].
        gamma: γ is log-uniform in [1 / gamma, gamma].
    """

    def __init__(self, gain: float = 0.15, offset: float = 0.05, gamma: float = 1.25) -> None:
        self.gain, self.offset, self.gamma = gain, offset, gamma

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        u = torch.rand(3)
        g = 1 + self.gain * (2 * u[0] - 1)
        b = self.offset * (2 * u[1] - 1)
        log_gamma = np.log(self.gamma) * (2 * u[2] - 1)
        return (g * image.clamp(0, 1) ** torch.exp(log_gamma) + b).clamp(0, 1)

    def __repr__(self) -> str:
        return f"IntensityJitter(gain={self.gain}, offset={self.offset}, gamma={self.gamma})"


def train_transform(size: int = INPUT_SIZE, min_scale: float = 0.8) -> v2.Compose:
    """Augmentation of (1, size, size) training frames (paper §4.2): random crop (80-100 % of
    the area, resized back to `size`), horizontal flip, intensity jitter."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(min_scale, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomHorizontalFlip(),
            IntensityJitter(),
        ]
    )


class ClassifierFrames(Dataset):
    """Frames of a curated dataset as classifier inputs, read from disk on demand.

    Items are (image, label): image (1, size, size) float32 in [0, 1], label a float32 scalar
    (0 when no labels are given). Implements `__getitems__`, so a DataLoader reads each batch
    with one call to `CuratedDataset.read`.

    Args:
        dataset: the curated dataset.
        frame_ids: (N,) frame ids to serve, in order.
        labels: (N,) 0/1 labels, or None.
        transform: applied to each (1, size, size) image after resizing (training only).
        size: side of the images served.
        via: a side the frames pass through before `size` (e.g. the native size of synthetic
            frames a classifier will judge), or None.
    """

    def __init__(
        self,
        dataset: CuratedDataset,
        frame_ids: np.ndarray,
        labels: np.ndarray | None = None,
        transform=None,
        size: int = INPUT_SIZE,
        via: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.frame_ids = np.asarray(frame_ids, dtype=np.int64)
        n = len(self.frame_ids)
        self.labels = np.zeros(n, np.float32) if labels is None else np.asarray(labels, np.float32)
        if len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels for {n} frames")
        self.transform, self.size, self.via = transform, size, via

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ids = self.frame_ids[np.asarray(indices, dtype=np.int64)]
        images = torch.from_numpy(self.dataset.read(ids))[:, None]
        if self.via is not None:
            images = resize_frames(images, self.via)
        images = resize_frames(images, self.size)
        if self.transform is not None:
            images = [self.transform(image) for image in images]
        labels = torch.from_numpy(self.labels[np.asarray(indices, dtype=np.int64)])
        return list(zip(images, labels, strict=True))
