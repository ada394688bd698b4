"""Shared fixtures: one small simulated archive written once per test session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from angiosynth.config import PhantomConfig
from angiosynth.phantom.archive import ArchiveSummary, write_archive

#: Settings of the shared archive: small frames, two patients, a fixed seed.
ARCHIVE_SIZE = 96
ARCHIVE_PATIENTS = 2
ARCHIVE_SEED = 0


@dataclass(frozen=True)
class Archive:
    """A written archive with its summary and ground truth."""

    root: Path
    summary: ArchiveSummary
    config: PhantomConfig
    seed: int
    truth: pd.DataFrame

    @property
    def series(self) -> pd.DataFrame:
        """One row per series (the first frame's row), indexed by series_uid."""
        return self.truth.groupby("series_uid").first()


def small_config(image_size: int = ARCHIVE_SIZE) -> PhantomConfig:
    """Phantom settings small enough for unit tests."""
    return PhantomConfig(image_size=image_size)


def write_small_archive(out: Path, seed: int = ARCHIVE_SEED, **kwargs: object) -> Archive:
    """Writes an archive with the shared test settings (keyword arguments override them)."""
    config = kwargs.pop("config", small_config())
    n_patients = kwargs.pop("n_patients", ARCHIVE_PATIENTS)
    summary = write_archive(out, n_patients=n_patients, seed=seed, config=config, **kwargs)
    truth = pd.read_parquet(out / "ground_truth.parquet")
    return Archive(root=out, summary=summary, config=config, seed=seed, truth=truth)


@pytest.fixture(scope="session")
def archive_writer() -> Callable[..., Archive]:
    """`write_small_archive`, for tests that need an archive of their own."""
    return write_small_archive


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """The shared archive (2 patients, 96 px, seed 0); tests must not modify it."""
    return write_small_archive(tmp_path_factory.mktemp("shared") / "archive")
