"""Fixtures of the curation tests: one curated copy of the shared phantom archive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from angiosynth.curation.curate import CurationSummary
from angiosynth.curation.dataset import CuratedDataset

from .helpers import run_curate, write_key

if TYPE_CHECKING:
    from conftest import Archive


@dataclass(frozen=True)
class Curated:
    """The shared archive curated once (size 64, one worker, seed 0, the fixed key)."""

    archive: Archive
    dicom: Path
    out: Path
    key_file: Path
    summary: CurationSummary

    @property
    def dataset(self) -> CuratedDataset:
        return CuratedDataset(self.out)


@pytest.fixture(scope="session")
def curated(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> Curated:
    """The reference dataset; tests must not modify it (copy it to resume it)."""
    base = tmp_path_factory.mktemp("reference")
    key_file = write_key(base / "dataset.key")
    dicom = archive.root / "dicom"
    summary = run_curate(dicom, base / "dataset", key_file=key_file)
    return Curated(archive, dicom, base / "dataset", key_file, summary)
