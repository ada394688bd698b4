"""The written archive: layout, DICOM round trip, ground truth, determinism and atomicity."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import XRayAngiographicImageStorage

from angiosynth.conditions import VIEWS
from angiosynth.config import PhantomConfig
from angiosynth.dicom.subtraction import log_subtract
from angiosynth.dicom.xa import read_xa
from angiosynth.phantom import archive as archive_module
from angiosynth.phantom.archive import ArchiveExistsError, write_archive
from angiosynth.phantom.geometry import view_for_angles
from angiosynth.phantom.simulate import simulate_patient

if TYPE_CHECKING:
    from conftest import Archive

UID_COLUMNS = ["study_uid", "series_uid", "sop_instance_uid"]
TRUTH_COLUMNS = {
    "patient_id",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "file",
    "series_description",
    "injection",
    "side",
    "circulation",
    "plane",
    "primary_angle",
    "secondary_angle",
    "view",
    "n_frames",
    "frame_index",
    "time_s",
    "phase",
    "is_arterial",
    "is_mask",
    "arterial_opacity",
    "capillary_opacity",
    "venous_opacity",
}
FILE_PATTERN = re.compile(r"dicom/PHANTOM\d{5}/STUDY\d+/SER\d{3}\.dcm")


def _frames_by_file(root: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(root).as_posix(): pydicom.dcmread(p).pixel_array
        for p in sorted((root / "dicom").rglob("*.dcm"))
    }


def _masks_by_file(root: Path, truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """Label stacks keyed by the DICOM file of their series (mask files are named by UID)."""
    pairs = truth.groupby("file")["series_uid"].first()
    out = {}
    for file, uid in pairs.items():
        with np.load(root / "masks" / f"{uid}.npz") as data:
            out[file] = data["labels"]
    return out


def _letter(vector: np.ndarray) -> str:
    """DICOM direction letter of a vector's dominant patient axis (LPS)."""
    axis = int(np.argmax(np.abs(vector)))
    return (("R", "L"), ("A", "P"), ("F", "H"))[axis][int(vector[axis] > 0)]


def _no_staging_left(parent: Path) -> None:
    hidden = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert hidden == [], hidden


# --- layout and ground truth ---------------------------------------------------------------


def test_layout_matches_the_documented_one(archive: Archive) -> None:
    root, truth = archive.root, archive.truth
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    dicom = {f for f in files if f.startswith("dicom/")}
    masks = {f for f in files if f.startswith("masks/")}

    assert dicom == set(truth["file"])
    assert all(FILE_PATTERN.fullmatch(f) for f in dicom), sorted(dicom)
    assert masks == {f"masks/{uid}.npz" for uid in truth["series_uid"].unique()}
    assert files - dicom - masks == {"ground_truth.parquet", "annotations.csv", "manifest.json"}
    _no_staging_left(root.parent)


def test_manifest_and_summary_describe_the_archive(archive: Archive) -> None:
    truth, summary = archive.truth, archive.summary
    manifest = json.loads((archive.root / "manifest.json").read_text())
    arterial = truth[truth["is_arterial"]]

    assert manifest["seed"] == archive.seed
    assert manifest["synthetic"] is True
    assert PhantomConfig.model_validate(manifest["config"]) == archive.config
    assert summary.root == archive.root
    assert manifest["patients"] == summary.n_patients == truth["patient_id"].nunique() == 2
    assert manifest["studies"] == summary.n_studies == truth["study_uid"].nunique()
    assert manifest["series"] == summary.n_series == truth["series_uid"].nunique()
    assert manifest["frames"] == summary.n_frames == len(truth)
    assert manifest["arterial_frames"] == summary.n_arterial_frames == len(arterial)
    expected_views = {v: int((arterial["view"] == v).sum()) for v in VIEWS}
    assert manifest["arterial_frames_per_view"] == summary.frames_per_view == expected_views
    assert sum(expected_views.values()) > 0


def test_ground_truth_has_one_row_per_frame(archive: Archive) -> None:
    truth = archive.truth

    assert set(truth.columns) == TRUTH_COLUMNS
    assert truth.notna().all().all()
    for _, rows in truth.groupby("series_uid"):
        n = int(rows["n_frames"].iloc[0])
        assert list(rows["frame_index"]) == list(range(n))
        for column in ("file", "sop_instance_uid", "plane", "primary_angle", "injection"):
            assert rows[column].nunique() == 1
        dt = rows["time_s"].diff().dropna()
        assert dt.max() - dt.min() < 1e-3 and dt.min() > 0
    assert (truth["is_mask"] == (truth["phase"] == "mask")).all()
    assert (truth["is_arterial"] == (truth["phase"] == "arterial")).all()
    assert set(truth["plane"]) == {"A", "B"}
    assert truth["circulation"].isin(["anterior", "posterior"]).any()


def test_views_follow_circulation_plane_and_angles(archive: Archive) -> None:
    series = archive.series
    kept = series[series["circulation"].isin(["anterior", "posterior"])]
    other = series[~series["circulation"].isin(["anterior", "posterior"])]

    assert (other["view"] == "").all()
    assert kept["view"].isin(VIEWS).all()
    for _, s in kept.iterrows():
        canonical = abs(s["primary_angle"] - (0 if s["plane"] == "A" else -90)) <= 5 and (
            abs(s["secondary_angle"]) <= 5
        )
        prefix = "AC" if s["circulation"] == "anterior" else "PC"
        assert s["view"] == (f"{prefix} {s['plane']}" if canonical else "Others")
    assert len(kept) > 0


def test_runs_come_as_biplane_pairs(archive: Archive) -> None:
    truth = archive.truth
    by_sop = truth.groupby("sop_instance_uid").first()

    for file, rows in truth.groupby("file"):
        ds = pydicom.dcmread(archive.root / file, stop_before_pixels=True)
        other_sop = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        other = by_sop.loc[other_sop]
        partner = truth[truth["sop_instance_uid"] == other_sop]
        assert other["plane"] != rows["plane"].iloc[0]
        assert other["study_uid"] == rows["study_uid"].iloc[0]
        assert other["series_description"] == rows["series_description"].iloc[0]
        assert list(partner["phase"]) == list(rows["phase"])
        np.testing.assert_allclose(partner["time_s"], rows["time_s"])


# --- DICOM files ---------------------------------------------------------------------------


def test_dicom_files_round_trip_with_the_ground_truth(archive: Archive) -> None:
    size = archive.config.image_size

    for file, rows in archive.truth.groupby("file"):
        s = rows.iloc[0]
        ds = pydicom.dcmread(archive.root / file)
        frames = ds.pixel_array

        assert ds.SOPClassUID == XRayAngiographicImageStorage
        assert ds.file_meta.MediaStorageSOPClassUID == XRayAngiographicImageStorage
        assert ds.SOPInstanceUID == s["sop_instance_uid"]
        assert ds.SeriesInstanceUID == s["series_uid"]
        assert ds.StudyInstanceUID == s["study_uid"]
        assert ds.PatientID == s["patient_id"] == file.split("/")[1]
        assert ds.SeriesDescription == s["series_description"]
        assert ds.NumberOfFrames == s["n_frames"] == len(rows)
        assert frames.shape == (s["n_frames"], size, size)
        assert frames.max() < 2**ds.BitsStored
        assert float(ds.PositionerPrimaryAngle) == pytest.approx(s["primary_angle"], abs=0.051)
        assert float(ds.PositionerSecondaryAngle) == pytest.approx(s["secondary_angle"], abs=0.051)
        assert ds.ImageType[2] == f"BIPLANE {s['plane']}"
        frame_time_s = float(ds.FrameTime) / 1000.0
        np.testing.assert_allclose(rows["time_s"], rows["frame_index"] * frame_time_s, atol=1e-3)
        n_mask = int(rows["is_mask"].sum())
        mask = ds.MaskSubtractionSequence[0]
        numbers = np.atleast_1d(mask.MaskFrameNumbers).tolist()  # VM 1 reads back as an int
        assert numbers == list(range(1, n_mask + 1))


def test_patient_orientation_matches_the_rendered_view(archive: Archive) -> None:
    for file, rows in archive.truth.groupby("file"):
        ds = pydicom.dcmread(archive.root / file, stop_before_pixels=True)
        view = view_for_angles(rows["primary_angle"].iloc[0], rows["secondary_angle"].iloc[0])

        row_dir, col_dir = ds.PatientOrientation
        assert row_dir[0] == _letter(view.right), file
        assert col_dir[0] == _letter(view.down), file


def test_masks_match_the_series(archive: Archive) -> None:
    size = archive.config.image_size
    masks = _masks_by_file(archive.root, archive.truth)

    for file, rows in archive.truth.groupby("file"):
        labels = masks[file]
        is_mask = rows["is_mask"].to_numpy()
        assert labels.shape == (len(rows), size, size)
        assert labels.dtype == np.uint8
        assert labels.max() <= 4
        assert not labels[is_mask].any()
        assert labels[rows["is_arterial"].to_numpy()].any()


def test_annotations_point_to_representative_arterial_frames(archive: Archive) -> None:
    truth = archive.truth
    notes = pd.read_csv(archive.root / "annotations.csv")

    assert list(notes.columns) == ["series_uid", "sop_instance_uid", "file", "frame_index"]
    assert len(notes) >= 1
    assert notes["series_uid"].is_unique
    for _, note in notes.iterrows():
        rows = truth[truth["series_uid"] == note["series_uid"]]
        frame = rows[rows["frame_index"] == note["frame_index"]].iloc[0]
        arterial = rows[rows["is_arterial"]]
        assert frame["circulation"] in ("anterior", "posterior")
        assert frame["phase"] == "arterial"
        assert frame["sop_instance_uid"] == note["sop_instance_uid"]
        assert frame["file"] == note["file"]
        assert frame["arterial_opacity"] == arterial["arterial_opacity"].max()


def test_dsa_of_written_files_shows_the_labelled_vessels(archive: Archive) -> None:
    """End to end: DICOM frames, mask frame numbers, shutter and masks/*.npz agree."""
    truth = archive.truth
    masks = _masks_by_file(archive.root, truth)
    best = truth[truth["is_arterial"]].sort_values("arterial_opacity").groupby("file").tail(1)

    assert len(best) >= 4
    for _, row in best.iterrows():
        series = read_xa(archive.root / row["file"])
        dsa = log_subtract(series.frames, series.mask_frames)[row["frame_index"]]
        labels = masks[row["file"]][row["frame_index"]]
        left, right, upper, lower = series.shutter
        inside = np.zeros(labels.shape, dtype=bool)
        inside[upper - 1 : lower, left - 1 : right] = True
        vessels, background = (labels > 0) & inside, (labels == 0) & inside
        assert dsa[vessels].mean() > 5 * np.abs(dsa[background]).mean() > 0


@pytest.mark.dciodvfy
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_dciodvfy_reports_no_errors(archive: Archive) -> None:
    files = sorted((archive.root / "dicom").rglob("*.dcm"))
    assert files

    for path in files:
        result = subprocess.run(
            ["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=60
        )
        lines = (result.stdout + result.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, f"{path}:\n" + "\n".join(lines)
        assert "XAImage" in result.stdout + result.stderr


# --- determinism ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rewritten(archive: Archive, archive_writer, tmp_path_factory) -> Archive:
    """The shared archive written again, same seed and settings, to another directory."""
    return archive_writer(tmp_path_factory.mktemp("again") / "archive", seed=archive.seed)


def test_same_seed_gives_identical_frames_masks_and_truth(
    archive: Archive, rewritten: Archive
) -> None:
    pd.testing.assert_frame_equal(
        archive.truth.drop(columns=UID_COLUMNS), rewritten.truth.drop(columns=UID_COLUMNS)
    )
    first, again = _frames_by_file(archive.root), _frames_by_file(rewritten.root)
    assert first.keys() == again.keys()
    for file in first:
        np.testing.assert_array_equal(first[file], again[file], err_msg=file)
    masks_a = _masks_by_file(archive.root, archive.truth)
    masks_b = _masks_by_file(rewritten.root, rewritten.truth)
    for file in masks_a:
        np.testing.assert_array_equal(masks_a[file], masks_b[file], err_msg=file)
    manifest = json.loads((archive.root / "manifest.json").read_text())
    assert manifest == json.loads((rewritten.root / "manifest.json").read_text())


def test_same_seed_gives_identical_uids_and_annotations(
    archive: Archive, rewritten: Archive
) -> None:
    pd.testing.assert_frame_equal(archive.truth, rewritten.truth)
    a = (archive.root / "annotations.csv").read_text()
    assert a == (rewritten.root / "annotations.csv").read_text()


def test_uid_is_a_function_of_seed_and_parts() -> None:
    assert archive_module._uid(3, 1, 0, "series") == archive_module._uid(3, 1, 0, "series")


def test_uid_parts_do_not_run_together() -> None:
    """(patient 1, study 0, run 12) and (patient 10, study 1, run 2) are different series."""
    a = archive_module._uid(0, 1, 0, 12, "A", "series")
    b = archive_module._uid(0, 10, 1, 2, "A", "series")

    assert a != b
    for uid in (a, b):
        assert len(uid) <= 64 and re.fullmatch(r"[1-9]\d*(\.(0|[1-9]\d*))+", uid), uid


def test_uids_are_unique_within_the_archive(archive: Archive) -> None:
    series = archive.series

    assert series["sop_instance_uid"].is_unique
    assert (
        series.groupby("patient_id")["study_uid"].nunique().sum() == series["study_uid"].nunique()
    )
    assert not set(series.index) & set(series["sop_instance_uid"])


def test_different_seed_gives_a_different_archive(archive: Archive, archive_writer, tmp_path):
    other = archive_writer(tmp_path / "other", seed=2, n_patients=1)
    key = ["series_description", "primary_angle", "secondary_angle", "n_frames"]
    mine = archive.truth[archive.truth["patient_id"] == "PHANTOM00001"]

    assert not mine[key].reset_index(drop=True).equals(other.truth[key].reset_index(drop=True))
    file = "dicom/PHANTOM00001/STUDY1/SER001.dcm"
    a = pydicom.dcmread(archive.root / file).pixel_array
    b = pydicom.dcmread(other.root / file).pixel_array
    assert a.shape != b.shape or not np.array_equal(a, b)


# --- existing output, overwrite, failures, workers -----------------------------------------


def test_non_empty_output_is_refused_and_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")

    with pytest.raises(ArchiveExistsError, match="--overwrite"):
        write_archive(out, 1, 0, PhantomConfig(image_size=64))

    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("not a directory")

    with pytest.raises(ArchiveExistsError):
        write_archive(out, 1, 0, PhantomConfig(image_size=64))

    assert out.read_text() == "not a directory"


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"n_patients": 0}, "--patients"), ({"workers": 0}, "--workers")]
)
def test_invalid_counts_raise_before_writing(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"n_patients": 1, "seed": 0, "config": PhantomConfig(image_size=64), **kwargs}

    with pytest.raises(ValueError, match=message):
        write_archive(tmp_path / "out", **args)

    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def single(archive: Archive, archive_writer, tmp_path_factory) -> tuple[Archive, list[int]]:
    """Seed 0 with one patient, written with overwrite=True over a non-empty directory."""
    out = tmp_path_factory.mktemp("single") / "archive"
    (out / "dicom").mkdir(parents=True)
    (out / "stale.txt").write_text("old archive")
    (out / "dicom" / "old.dcm").write_bytes(b"old")
    seen: list[int] = []

    def progress(items, total, desc):
        assert (total, desc) == (1, "phantom")
        for item in items:
            seen.append(len(item))
            yield item

    written = archive_writer(
        out, seed=archive.seed, n_patients=1, overwrite=True, progress=progress
    )
    return written, seen


def test_overwrite_replaces_the_old_content(single) -> None:
    written, seen = single
    root = written.root

    assert not (root / "stale.txt").exists()
    assert not (root / "dicom" / "old.dcm").exists()
    assert (root / "ground_truth.parquet").is_file()
    assert {p.name for p in root.iterdir()} == {
        "dicom",
        "masks",
        "ground_truth.parquet",
        "annotations.csv",
        "manifest.json",
    }
    assert len(seen) == 1 and seen[0] == len(written.truth)  # the progress wrapper saw each patient
    _no_staging_left(root.parent)


def test_patients_do_not_depend_on_archive_size(archive: Archive, single) -> None:
    """Patient 1 of a one-patient archive is patient 1 of the two-patient archive."""
    written, _ = single
    first = archive.truth[archive.truth["patient_id"] == "PHANTOM00001"].reset_index(drop=True)

    pd.testing.assert_frame_equal(
        first.drop(columns=UID_COLUMNS), written.truth.drop(columns=UID_COLUMNS)
    )
    mine = _frames_by_file(written.root)
    theirs = _frames_by_file(archive.root)
    assert mine
    for file, frames in mine.items():
        np.testing.assert_array_equal(frames, theirs[file], err_msg=file)


def _fail_on_second_patient(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def flaky(index, seed, config, pairs=False):
        calls.append(index)
        if index == 1:
            raise RuntimeError("simulated crash on patient 2")
        return simulate_patient(index, seed, config, pairs)

    monkeypatch.setattr(archive_module, "simulate_patient", flaky)
    return calls


def test_failure_leaves_no_output_and_no_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fail_on_second_patient(monkeypatch)
    out = tmp_path / "out"

    with pytest.raises(RuntimeError, match="patient 2"):
        write_archive(out, 2, 0, PhantomConfig(image_size=64))

    assert calls == [0, 1]  # patient 1 was written to the staging directory first
    assert list(tmp_path.iterdir()) == []


def test_failure_during_overwrite_keeps_the_old_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fail_on_second_patient(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")

    with pytest.raises(RuntimeError):
        write_archive(out, 2, 0, PhantomConfig(image_size=64), overwrite=True)

    assert calls == [0, 1]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_parallel_workers_give_the_same_archive(archive: Archive, archive_writer, tmp_path):
    parallel = archive_writer(tmp_path / "parallel", seed=archive.seed, workers=2)

    pd.testing.assert_frame_equal(
        archive.truth.drop(columns=UID_COLUMNS), parallel.truth.drop(columns=UID_COLUMNS)
    )
    assert parallel.summary.frames_per_view == archive.summary.frames_per_view
    serial, par = _frames_by_file(archive.root), _frames_by_file(parallel.root)
    assert serial.keys() == par.keys()
    for file in serial:
        np.testing.assert_array_equal(serial[file], par[file], err_msg=file)
