"""Helpers shared by the curation tests: archive copies, small XA files, `curate` with the
fixed key of conftest."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom

from angiosynth.curation.curate import CurateOptions, CurationSummary, curate
from angiosynth.curation.rules import DEFAULT_RULES, CirculationRules
from angiosynth.phantom.dicom_writer import XASeriesInfo, write_xa_series
from conftest import write_key

#: Every stored size in these tests (the phantom archive is 96 px).
SIZE = 64
#: Strings of the phantom's original identities that must never reach a dataset.
IDENTITY_MARKERS = ("PHANTOM0", "PATIENT0")


def copy_dicom(archive_root: Path, dest: Path) -> Path:
    """Copies the DICOM tree of a phantom archive to DEST/dicom; returns that folder."""
    target = dest / "dicom"
    shutil.copytree(archive_root / "dicom", target)
    return target


def run_curate(
    dicom: Path,
    out: Path,
    *,
    rules: CirculationRules = DEFAULT_RULES,
    key_file: Path | None = None,
    **options: object,
) -> CurationSummary:
    """`curate` with the test defaults (size 64, one worker, seed 0, the fixed key)."""
    key_file = key_file or write_key(out.parent / f"{out.name}.key")
    settings = {"size": SIZE, "workers": 1, "seed": 0, "key_file": key_file, **options}
    return curate(dicom, out, rules, CurateOptions(**settings))


def edit_dicom(path: Path, change: Callable[[pydicom.Dataset], None], dest: Path | None = None):
    """Reads `path`, applies `change` to the dataset and writes it to `dest` (default: in place)."""
    ds = pydicom.dcmread(path)
    change(ds)
    dest = dest or path
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=True)
    return dest


_BASE_INFO = XASeriesInfo(
    patient_name="TEST^SUBJECT",
    patient_id="SUBJ01",
    patient_birth_date="19600101",
    patient_sex="O",
    study_uid="2.25.1001",
    study_id="1",
    study_date="20200101",
    study_time="080000",
    accession_number="ACC1",
    study_description="Cerebral angiography",
    series_uid="2.25.2001",
    series_number=1,
    series_description="ICA links",
    protocol_name="Kopf DSA",
    sop_instance_uid="2.25.3001",
    frame_of_reference_uid="2.25.4001",
    plane="A",
    primary_angle=0.0,
    secondary_angle=0.0,
    frame_time_ms=250.0,
    mask_frames=(1, 2),
    imager_pixel_spacing_mm=0.3,
    source_to_detector_mm=1200.0,
    source_to_patient_mm=800.0,
    kvp=80.0,
    tube_current_ma=250.0,
    exposure_time_ms=80.0,
    shutter_edges=(1, 48, 1, 48),
    manufacturer="test",
    model_name="test",
    institution_name="test site",
    laterality="L",
    acquisition_time="080000.000000",
    other_plane_sop_instance_uid="2.25.3002",
)


def xa_info(**changes: object) -> XASeriesInfo:
    """Header content of a small test series (shutter covering the whole 48 x 48 image)."""
    return replace(_BASE_INFO, **changes)


def write_series(path: Path, frames: np.ndarray, bits_stored: int = 12, **changes: object) -> Path:
    """Writes native uint16 frames as a phantom-style XA file (LIN, AVG_SUB mask sequence)."""
    rows, cols = frames.shape[1:]
    changes.setdefault("shutter_edges", (1, cols, 1, rows))
    write_xa_series(path, frames.astype(np.uint16), xa_info(**changes), bits_stored=bits_stored)
    return path


def write_log_series(path: Path, frames: np.ndarray, sign: int, **changes: object) -> Path:
    """`write_series`, then marked as logarithmic pixel values (Pixel Intensity Relationship
    LOG) with the given Pixel Intensity Relationship Sign."""
    write_series(path, frames, **changes)

    def logarithmic(ds) -> None:
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = sign

    edit_dicom(path, logarithmic)
    return path


def dataset_text_hits(root: Path, needles: tuple[str, ...]) -> list[str]:
    """`file: needle` for every needle found in any file under `root`.

    Every file is searched as raw bytes (ASCII and UTF-16); Parquet tables are also read and
    every cell searched, since their pages may be compressed.
    """
    import pandas as pd

    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        texts = [raw.decode("latin-1"), raw.decode("utf-16-le", errors="ignore")]
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
            texts.append(" ".join(map(str, table.columns)))
            texts.append(table.astype(str).to_csv(index=False))
        for needle in needles:
            if any(needle.upper() in text.upper() for text in texts):
                hits.append(f"{path.relative_to(root)}: {needle}")
    return hits
