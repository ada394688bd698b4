"""Writes a simulated DSA archive: DICOM XA files plus ground truth beside them.

Layout of an archive directory::

    OUT/
      dicom/<PatientID>/STUDY<k>/SER<nnn>.dcm   one multi-frame XA file per series (plane)
      masks/<SeriesInstanceUID>.npz             `labels`: (F, H, W) uint8 vessel masks
      pairs/<SeriesInstanceUID>.npz             only with `pairs`: `noncontrast` (F, H, W) uint16,
                                                each frame's no-contrast twin (same anatomy,
                                                motion, collimation and noise draw), `shutter`
                                                (4,) int 1-based (left, right, upper, lower)
      ground_truth.parquet                      one row per frame
      annotations.csv                           representative arterial frame of some series
      manifest.json                             seed, configuration, counts, version
      preview.png                               optional contact sheet

The twins in pairs/ give exact pairs for contrast-free translation: a frame and its twin differ
only by the contrast (simulate.py); the mask frames equal their twins. Writing pairs changes
nothing else in the archive (the DICOM pixel data, masks and ground truth stay byte-identical),
except that manifest.json records `"pairs": true`.

The whole archive is written under a hidden staging directory next to OUT and renamed into place
at the end (`runfiles.atomic_directory`), so an interrupted run never leaves a half-written
archive under the final name and a failed overwrite keeps the old archive.
"""

from __future__ import annotations

import uuid
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from angiosynth import __version__
from angiosynth.conditions import VIEWS, canonical_view
from angiosynth.config import PhantomConfig
from angiosynth.dicom.writing import deterministic_uid
from angiosynth.errors import OptionError, OutputExistsError
from angiosynth.phantom.dicom_writer import XASeriesInfo, write_xa_series
from angiosynth.phantom.protocol import CIRCULATION_OF
from angiosynth.phantom.simulate import PatientSimulation, RunResult, simulate_patient
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import atomic_directory, atomic_path, write_json_atomic

MANUFACTURER = ("angiosynth", "DSA phantom")


class ArchiveExistsError(OutputExistsError):
    """The output directory exists and is not empty (and overwriting was not asked for)."""


@dataclass(frozen=True)
class ArchiveSummary:
    """What a phantom run wrote."""

    root: Path
    n_patients: int
    n_studies: int
    n_series: int
    n_frames: int
    n_arterial_frames: int
    frames_per_view: dict[str, int]


def write_archive(
    out: Path,
    n_patients: int,
    seed: int,
    config: PhantomConfig,
    workers: int = 1,
    overwrite: bool = False,
    progress: Progress | None = None,
    pairs: bool = False,
) -> ArchiveSummary:
    """Simulates `n_patients` patients and writes the archive to `out` atomically.

    Args:
        out: final archive directory (must not exist or be empty, unless `overwrite`).
        n_patients: number of simulated patients (>= 1).
        seed: master seed; the same seed gives byte-identical pixel data and ground truth.
        config: simulation settings.
        workers: processes simulating patients in parallel.
        overwrite: replace an existing non-empty `out`.
        progress: optional progress callback over the patients (e.g. a progress bar).
        pairs: also write pairs/<SeriesInstanceUID>.npz, the no-contrast twins of every frame.

    Raises:
        OptionError: fewer than 1 patient or worker.
        ArchiveExistsError: `out` is not empty and `overwrite` is False.
    """
    if n_patients < 1:
        raise OptionError(f"--patients must be at least 1, got {n_patients}")
    if workers < 1:
        raise OptionError(f"--workers must be at least 1, got {workers}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ArchiveExistsError(f"{out} exists and is not empty; use --overwrite to replace it")
    with atomic_directory(out) as staging:
        rows = _simulate_all(staging, n_patients, seed, config, workers, progress, pairs)
        truth = pd.DataFrame(rows)
        truth.to_parquet(staging / "ground_truth.parquet", index=False)
        _annotations(truth, seed, config.annotate_share).to_csv(
            staging / "annotations.csv", index=False
        )
        summary = _summary(out, truth, n_patients)
        _write_manifest(staging, seed, config, summary, pairs)
    return summary


def _simulate_all(staging, n_patients, seed, config, workers, progress, pairs) -> list[dict]:
    jobs = [(i, seed, config, staging, pairs) for i in range(n_patients)]
    rows: list[dict] = []
    if workers == 1:
        for job in tracked(map(_patient_job, jobs), n_patients, "phantom", progress):
            rows.extend(job)
        return rows
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for job in tracked(pool.map(_patient_job, jobs), n_patients, "phantom", progress):
            rows.extend(job)
    return rows


def _patient_job(args: tuple[int, int, PhantomConfig, Path, bool]) -> list[dict]:
    index, seed, config, staging, pairs = args
    return write_patient(simulate_patient(index, seed, config, pairs), seed, config, staging)


_UID_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-5b8e-9a4c-2f7d1e0b8c31")


def _uid(seed: int, *parts: object) -> str:
    """The phantom's deterministic UID of (seed, parts) (`dicom.writing.deterministic_uid`)."""
    return deterministic_uid(_UID_NAMESPACE, "angiosynth-phantom", seed, *parts)


def write_patient(
    sim: PatientSimulation, seed: int, config: PhantomConfig, root: Path
) -> list[dict]:
    """Writes the DICOM files, masks and (when simulated) pairs of one patient; returns
    ground-truth rows."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(sim.index, 1)))
    patient_id = f"PHANTOM{sim.index + 1:05d}"
    birth = date(1940, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 55)))
    sex = str(rng.choice(["F", "M"]))
    rows = []
    for k, (study, runs) in enumerate(zip(sim.studies, sim.runs, strict=True)):
        when = datetime(2016, 1, 4, 8) + timedelta(
            days=int(rng.integers(0, 3000)), minutes=int(rng.integers(0, 600))
        )
        study_uid = _uid(seed, sim.index, k)
        common = {
            "patient_name": f"PHANTOM^PATIENT{sim.index + 1:05d}",
            "patient_id": patient_id,
            "patient_birth_date": birth.strftime("%Y%m%d"),
            "patient_sex": sex,
            "study_uid": study_uid,
            "study_id": f"{k + 1}",
            "study_date": when.strftime("%Y%m%d"),
            "study_time": when.strftime("%H%M%S"),
            "accession_number": f"ACC{sim.index + 1:05d}{k + 1}",
            "study_description": "Zerebrale Angiographie"
            if study.language == "de"
            else "Cerebral angiography",
        }
        for r, run in enumerate(runs):
            started = when + timedelta(minutes=3 * r)
            rows.extend(_write_run(run, r, common, started, seed, sim.index, k, config, root))
    return rows


def _write_run(run: RunResult, r, common, started, seed, index, k, config, root) -> list[dict]:
    """Writes both planes of a run; returns one ground-truth row per frame and plane."""
    plan = run.plan
    sop = {p.plane: _uid(seed, index, k, r, p.plane, "sop") for p in plan.planes}
    other = {"A": sop["B"], "B": sop["A"]}
    rows = []
    for geom, plane in zip(plan.planes, run.planes, strict=True):
        series_number = 2 * r + (1 if geom.plane == "A" else 2)
        series_uid = _uid(seed, index, k, r, geom.plane, "series")
        rel = Path("dicom") / common["patient_id"] / f"STUDY{k + 1}" / f"SER{series_number:03d}.dcm"
        info = XASeriesInfo(
            **common,
            series_uid=series_uid,
            series_number=series_number,
            series_description=plan.description,
            protocol_name=plan.protocol_name,
            sop_instance_uid=sop[geom.plane],
            frame_of_reference_uid=_uid(seed, index, k, "for"),
            plane=geom.plane,
            primary_angle=geom.primary,
            secondary_angle=geom.secondary,
            frame_time_ms=plan.frame_time_ms,
            mask_frames=tuple(range(1, plan.n_mask + 1)),
            imager_pixel_spacing_mm=config.pixel_spacing_mm * 1.5,
            source_to_detector_mm=1200.0,
            source_to_patient_mm=800.0,
            kvp=80.0,
            tube_current_ma=250.0,
            exposure_time_ms=80.0,
            shutter_edges=plane.shutter,
            manufacturer=MANUFACTURER[0],
            model_name=MANUFACTURER[1],
            institution_name="angiosynth synthetic site",
            laterality={1: "L", -1: "R"}.get(plan.side, ""),
            acquisition_time=started.strftime("%H%M%S.%f"),
            other_plane_sop_instance_uid=other[geom.plane],
        )
        write_xa_series(root / rel, plane.frames, info, bits_stored=config.bits_stored)
        _save_npz(root / "masks" / f"{series_uid}.npz", labels=plane.labels)
        if plane.noncontrast is not None:
            shutter = np.asarray(plane.shutter, dtype=np.int64)
            _save_npz(root / "pairs" / f"{series_uid}.npz", noncontrast=plane.noncontrast,
                      shutter=shutter)  # fmt: skip
        circulation = CIRCULATION_OF[plan.injection]
        view = canonical_view(circulation, geom.plane, geom.primary, geom.secondary)
        for i, t in enumerate(run.times_s):
            rows.append(
                {
                    "patient_id": common["patient_id"],
                    "study_uid": common["study_uid"],
                    "series_uid": series_uid,
                    "sop_instance_uid": sop[geom.plane],
                    "file": rel.as_posix(),
                    "series_description": plan.description,
                    "injection": plan.injection,
                    "side": {1: "left", -1: "right"}.get(plan.side, "both"),
                    "circulation": circulation,
                    "plane": geom.plane,
                    "primary_angle": geom.primary,
                    "secondary_angle": geom.secondary,
                    "view": view,
                    "n_frames": plan.n_frames,
                    "frame_index": i,
                    "time_s": round(float(t), 4),
                    "phase": run.phases[i],
                    "is_arterial": run.phases[i] == "arterial",
                    "is_mask": i < plan.n_mask,
                    "arterial_opacity": float(run.opacity[i, 0]),
                    "capillary_opacity": float(run.opacity[i, 1]),
                    "venous_opacity": float(run.opacity[i, 2]),
                }
            )
    return rows


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Writes named arrays as a compressed .npz (fast deflate level), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
    ):
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array))


def _annotations(truth: pd.DataFrame, seed: int, share: float) -> pd.DataFrame:
    """The representative arterial frame (highest distal opacification) of a share of series.

    Only series of the kept circulations (anterior / posterior) with at least one arterial frame
    are eligible, as an expert annotating for the phase classifier would choose them.
    """
    columns = ["series_uid", "sop_instance_uid", "file", "frame_index"]
    eligible = truth[truth["circulation"].isin(["anterior", "posterior"]) & truth["is_arterial"]]
    if eligible.empty:
        return pd.DataFrame(columns=columns)
    best = eligible.loc[eligible.groupby("series_uid")["arterial_opacity"].idxmax()]
    best = best.sort_values("series_uid")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
    chosen = rng.random(len(best)) < share
    return best.loc[chosen, columns].reset_index(drop=True)


def _summary(out: Path, truth: pd.DataFrame, n_patients: int) -> ArchiveSummary:
    arterial = truth[truth["is_arterial"]]
    views = arterial[arterial["view"] != ""]["view"].value_counts()
    return ArchiveSummary(
        root=out,
        n_patients=n_patients,
        n_studies=int(truth["study_uid"].nunique()),
        n_series=int(truth["series_uid"].nunique()),
        n_frames=len(truth),
        n_arterial_frames=len(arterial),
        frames_per_view={v: int(views.get(v, 0)) for v in VIEWS},
    )


def _write_manifest(
    staging: Path, seed: int, config: PhantomConfig, summary: ArchiveSummary, pairs: bool
) -> None:
    manifest = {
        "generator": "angiosynth phantom",
        "version": __version__,
        "seed": seed,
        "config": config.model_dump(),
        "patients": summary.n_patients,
        "studies": summary.n_studies,
        "series": summary.n_series,
        "frames": summary.n_frames,
        "arterial_frames": summary.n_arterial_frames,
        "arterial_frames_per_view": summary.frames_per_view,
        "synthetic": True,
        "pairs": pairs,
    }
    write_json_atomic(staging / "manifest.json", manifest)
