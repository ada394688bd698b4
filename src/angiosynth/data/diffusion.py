"""Arterial-phase frames and their prompts as inputs of the autoencoder and the diffusion model.

Images are scaled to [-1, 1] (diffusers' convention): x = 2 * frame - 1, frame in [0, 1] as
stored by curation. The prompt of each frame is the template sentence written by `phase select`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from angiosynth.conditions import CONDITIONS
from angiosynth.curation.dataset import CuratedDataset, DatasetError
from angiosynth.data.frames import resize_frames


def arterial_rows(dataset: CuratedDataset, split: str) -> pd.DataFrame:
    """The selected arterial frames of one split with a prompt (frame_id, prompt, view, ...).

    Raises:
        DatasetError: no arterial selection, or no prompted frames in `split`.
    """
    rows = dataset.arterial()
    rows = rows[(rows["split"] == split) & rows["prompt"].notna()].reset_index(drop=True)
    if rows.empty:
        raise DatasetError(f"{dataset.root}: no arterial frames with a prompt in split {split!r}")
    return rows


def to_model_range(frames: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return frames * 2 - 1


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped."""
    return ((images + 1) / 2).clamp(0, 1)


class ArterialImages(Dataset):
    """Frames as (1, size, size) float32 images in [-1, 1], read from disk on demand.

    Implements `__getitems__`, so a DataLoader reads each batch with one `CuratedDataset.read`.

    Args:
        dataset: the curated dataset.
        frame_ids: (N,) frame ids to serve, in order.
        size: side of the images served.
    """

    def __init__(self, dataset: CuratedDataset, frame_ids: np.ndarray, size: int) -> None:
        self.dataset, self.size = dataset, size
        self.frame_ids = np.asarray(frame_ids, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(self.read(np.asarray(indices, dtype=np.int64)))

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """(n, 1, size, size) images of the given positions (not frame ids)."""
        frames = torch.from_numpy(self.dataset.read(self.frame_ids[indices]))[:, None]
        return to_model_range(resize_frames(frames, self.size))


def view_weights(views: pd.Series) -> np.ndarray:
    """(N,) sampling weights that draw each of the four conditions equally often (views outside
    CONDITIONS share the weight of one condition)."""
    counts = views.value_counts()
    present = [v for v in CONDITIONS if v in counts.index]
    groups = len(present) + (1 if len(counts) > len(present) else 0)
    weight = np.array([1.0 / counts[v] if v in present else 0.0 for v in views], dtype=float)
    others = ~views.isin(present).to_numpy()
    if others.any():
        weight[others] = 1.0 / others.sum()
    return weight / groups
