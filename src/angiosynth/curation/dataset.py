"""The curated dataset on disk, and reading it.

Layout of a dataset directory::

    DATASET/
      series.parquet     one row per series (kept or excluded, with the reason); native_low and
                         native_high: the log-exposure window of its native frames (empty for
                         series stored already subtracted)
      frames.parquet     one row per stored frame: frame_id = row of frames.zarr and native.zarr;
                         has_native: False for series stored already subtracted
      frames.zarr        (N, size, size) uint16 DSA frames in [0, 65535], chunks of one frame
      native.zarr        (N, size, size) uint16 native frames, the same rows: log exposure
                         windowed per series inside the shutter (brighter = more exposure,
                         contrast dark), black outside it, padded and resized like frames.zarr;
                         rows of zeros where has_native is False
      skipped.csv        files that could not be used, with the reason
      arterial.parquet   frames selected as arterial phase (after `angiosynth phase select`)
      report.md/.html    curation flow and Table 1
      curation.json      settings of the run (size, seed, split fractions, rules)

frames.zarr and native.zarr are appended to first and the Parquet tables are replaced
atomically afterwards, so the tables are the commit record: rows of either array beyond the last
frame_id in frames.parquet belong to an interrupted run and are overwritten when it resumes.
Datasets curated before native.zarr existed still serve their DSA frames; their native frames
need a new curation (`CuratedDataset.read(..., kind="native")` says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from angiosynth.curation.frames import STORED_MAX
from angiosynth.errors import AngiosynthError

SERIES_FILE = "series.parquet"
FRAMES_FILE = "frames.parquet"
ZARR_FILE = "frames.zarr"
NATIVE_FILE = "native.zarr"
SKIPPED_FILE = "skipped.csv"
ARTERIAL_FILE = "arterial.parquet"
SETTINGS_FILE = "curation.json"


class DatasetError(AngiosynthError, ValueError):
    """A dataset directory is missing files or is inconsistent."""


class CuratedDataset:
    """Read access to a curated dataset (frames streamed from disk, never all in memory).

    Attributes:
        root: the dataset directory.
        series: one row per series.
        frames: one row per stored frame, `frame_id` indexing the frame arrays.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for name in (SERIES_FILE, FRAMES_FILE, ZARR_FILE):
            if not (self.root / name).exists():
                raise DatasetError(f"{self.root}: not a curated dataset (missing {name})")
        self.series = pd.read_parquet(self.root / SERIES_FILE)
        self.frames = pd.read_parquet(self.root / FRAMES_FILE)
        self._arrays = {"dsa": self._open(ZARR_FILE)}
        if self.has_native:
            self._arrays["native"] = self._open(NATIVE_FILE)

    def _open(self, name: str):
        array = zarr.open_array(self.root / name, mode="r")
        if len(self.frames) and self.frames["frame_id"].max() >= array.shape[0]:
            raise DatasetError(f"{self.root}: {FRAMES_FILE} points past the end of {name}")
        return array

    @property
    def image_size(self) -> int:
        """Side length of the stored square frames."""
        return int(self._arrays["dsa"].shape[-1])

    @property
    def has_native(self) -> bool:
        """Whether the dataset stores native frames (native.zarr; curated since they are kept)."""
        return (self.root / NATIVE_FILE).exists()

    def read(self, frame_ids: np.ndarray | list[int], kind: str = "dsa") -> np.ndarray:
        """Returns frames as (n, size, size) float32 in [0, 1], in the order asked for.

        Args:
            frame_ids: (n,) frame ids.
            kind: "dsa" (frames.zarr) or "native" (native.zarr; zeros where has_native is False).

        Raises:
            DatasetError: native frames asked of a dataset curated before they were kept.
        """
        array = self._array(kind)
        ids = np.asarray(frame_ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.image_size, self.image_size), dtype=np.float32)
        order = np.argsort(ids)
        data = array.get_orthogonal_selection((ids[order], slice(None), slice(None)))
        out = np.empty_like(data)
        out[order] = data
        return out.astype(np.float32) / STORED_MAX

    def require_native(self) -> None:
        """Raises DatasetError (one line: how to add them) when the dataset has no native frames."""
        if not self.has_native:
            raise DatasetError(
                f"{self.root}: has no native frames (curated before {NATIVE_FILE} was kept); "
                "curate the archive again into a new dataset directory to add them"
            )

    def _array(self, kind: str):
        if kind not in ("dsa", "native"):
            raise ValueError(f"kind must be 'dsa' or 'native', got {kind!r}")
        if kind == "native":
            self.require_native()
        return self._arrays[kind]

    def arterial(self) -> pd.DataFrame:
        """The arterial-phase selection (raises DatasetError before `phase select`)."""
        path = self.root / ARTERIAL_FILE
        if not path.exists():
            raise DatasetError(f"{self.root}: no {ARTERIAL_FILE}; run `angiosynth phase select`")
        return pd.read_parquet(path)
