"""`curate` end to end: labels, corrupt files, resuming, interruption, splits, privacy, report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import zarr
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

import angiosynth.curation.curate as curate_module
from angiosynth.curation.curate import CurateOptions, curate
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.curation.rules import DEFAULT_RULES, CirculationRule, CirculationRules
from angiosynth.curation.splits import SPLITS, split_of

from .helpers import IDENTITY_MARKERS, copy_dicom, dataset_text_hits, edit_dicom, run_curate

# --------------------------------------------------------------------------- labels


def test_reference_run_summary(curated) -> None:
    truth = curated.archive.truth
    kept_truth = truth[truth["circulation"].isin(["anterior", "posterior"])]
    summary = curated.summary

    assert summary.files == summary.series == truth["series_uid"].nunique()
    assert summary.skipped_files == 0 and summary.resumed_series == 0
    assert summary.kept_series == kept_truth["series_uid"].nunique()
    assert summary.frames == len(kept_truth)
    assert sum(summary.excluded.values()) == summary.series - summary.kept_series


def test_labels_match_the_phantom_ground_truth(curated) -> None:
    truth = curated.archive.truth
    dataset = curated.dataset
    series = dataset.series.set_index("series_uid")
    by_series = truth.groupby("series_uid").first()
    reasons = {"external": "external carotid", "common_carotid": "common carotid",
               "arch": "aortic arch", "unlabelled": "unknown circulation"}  # fmt: skip
    assert set(series.index) == set(by_series.index)
    for uid, row in by_series.iterrows():
        got = series.loc[uid]
        assert got["plane"] == row["plane"] and got["plane_source"] == "image_type"
        assert got["primary_angle"] == pytest.approx(row["primary_angle"], abs=0.051)
        assert got["secondary_angle"] == pytest.approx(row["secondary_angle"], abs=0.051)
        assert got["n_frames"] == row["n_frames"] and got["n_files"] == 1
        assert got["sop_class"] == "XA"
        if row["circulation"] in ("anterior", "posterior"):
            assert got["circulation"] == row["circulation"] and pd.isna(got["excluded_reason"])
            assert got["dsa_source"] == "mask"
            near_edge = any(abs(abs(row[a] - c) - 5.0) < 0.06 for a, c in
                            [("primary_angle", 0.0 if row["plane"] == "A" else -90.0),
                             ("secondary_angle", 0.0)])  # fmt: skip
            if not near_edge:  # stored angles are rounded to 0.1 degree
                assert got["view"] == row["view"]
        else:
            assert got["circulation"] == "excluded" and got["view"] == ""
            assert got["excluded_reason"] == reasons.get(row["circulation"], row["circulation"])

    frames = dataset.frames
    assert (frames["frame_id"].to_numpy() == np.arange(len(frames))).all()
    kept = truth[truth["circulation"].isin(["anterior", "posterior"])]
    merged = frames.merge(kept, on=["series_uid", "frame_index"], suffixes=("", "_truth"))
    assert len(merged) == len(frames) == len(kept)
    assert (merged["is_mask"] == merged["is_mask_truth"]).all()
    np.testing.assert_allclose(merged["time_s"], merged["time_s_truth"], atol=2e-3)
    assert (merged["circulation"] == merged["circulation_truth"]).all()


def test_stored_frames_are_dsa_in_range(curated) -> None:
    dataset = curated.dataset
    frames = dataset.frames
    assert dataset.image_size == 64
    images = dataset.read(frames["frame_id"].to_numpy())
    assert images.shape == (len(frames), 64, 64) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    masks = images[frames["is_mask"].to_numpy()]
    contrast = images[~frames["is_mask"].to_numpy()]
    # Mask frames show the grey background only; contrast frames have dark vessels.
    centre = masks[:, 16:48, 16:48]
    assert np.median(centre) == pytest.approx(0.6, abs=0.01)
    assert np.mean(contrast < 0.3) > np.mean(masks < 0.3)
    # read() returns frames in the order asked for.
    ids = np.array([5, 0, 3])
    np.testing.assert_array_equal(dataset.read(ids)[0], dataset.read([5])[0])


# --------------------------------------------------------------------------- corrupt files


def _secondary_capture_without_pixels(path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.save_as(path, enforce_file_format=True)
    return path


def _text_report(path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "SR"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.save_as(path, enforce_file_format=True)
    return path


#: Added file (relative to the DICOM folder) -> a pattern its skipped.csv reason must match.
CORRUPT = {
    "PHANTOM00001/random.dcm": "not a DICOM file",
    "PHANTOM00002/STUDY1/empty.dcm": "not a DICOM file",
    "PHANTOM00001/STUDY1/truncated.dcm": "cannot read DICOM pixel data",
    "PHANTOM00002/secondary_capture.dcm": "unsupported SOP class 1.2.840.10008.5.1.4.1.1.7",
    "report_sr.dcm": "unsupported SOP class 1.2.840.10008.5.1.4.1.1.88.11",
    "PHANTOM00001/xa_without_pixels.dcm": "no pixel data",
    "notes.txt": "not a DICOM file",
}


@pytest.fixture(scope="module")
def messy(curated, tmp_path_factory: pytest.TempPathFactory):
    """The shared archive plus corrupt and non-image files, curated."""
    base = tmp_path_factory.mktemp("messy")
    dicom = copy_dicom(curated.archive.root, base / "archive")
    real = sorted(dicom.rglob("*.dcm"))[0]
    rng = np.random.default_rng(1)
    (dicom / "PHANTOM00001/random.dcm").write_bytes(rng.bytes(4096))
    (dicom / "PHANTOM00002/STUDY1/empty.dcm").write_bytes(b"")
    truncated = dicom / "PHANTOM00001/STUDY1/truncated.dcm"

    def new_series(ds) -> None:
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    edit_dicom(real, new_series, truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _secondary_capture_without_pixels(dicom / "PHANTOM00002/secondary_capture.dcm")
    _text_report(dicom / "report_sr.dcm")
    edit_dicom(real, lambda ds: (new_series(ds), delattr(ds, "PixelData")),
               dicom / "PHANTOM00001/xa_without_pixels.dcm")  # fmt: skip
    (dicom / "notes.txt").write_text("Patient list: see PACS\n")
    summary = run_curate(dicom, base / "dataset", key_file=curated.key_file)
    return base / "dataset", summary


def test_corrupt_files_are_skipped_with_a_reason_and_good_series_kept(curated, messy) -> None:
    out, summary = messy
    skipped = pd.read_csv(out / "skipped.csv")

    assert summary.skipped_files == len(CORRUPT) == len(skipped)
    assert skipped["reason"].notna().all()
    reasons = list(skipped["reason"])
    for pattern in CORRUPT.values():
        assert any(pattern in reason for reason in reasons), (pattern, reasons)
    # File names are kept, patient folders pseudonymised.
    names = sorted(Path(f).name for f in skipped["file"])
    assert names == sorted(Path(f).name for f in CORRUPT)
    assert not any("PHANTOM" in f for f in skipped["file"])
    by_name = {Path(f).name: r for f, r in zip(skipped["file"], skipped["reason"], strict=True)}
    for file, pattern in CORRUPT.items():
        assert pattern in by_name[Path(file).name], (file, by_name[Path(file).name])

    # The truncated file's series is listed as undecodable; every good series is as before.
    result, reference = CuratedDataset(out), curated.dataset
    extra = result.series[~result.series["series_uid"].isin(reference.series["series_uid"])]
    assert len(extra) == 1 and extra["excluded_reason"].iloc[0].startswith("undecodable: ")
    same = result.series[result.series["series_uid"].isin(reference.series["series_uid"])]
    pd.testing.assert_frame_equal(same.reset_index(drop=True), reference.series)
    pd.testing.assert_frame_equal(result.frames, reference.frames)
    ids = reference.frames["frame_id"].to_numpy()
    np.testing.assert_array_equal(result.read(ids), reference.read(ids))
    flow = (out / "report.md").read_text()
    assert re.search(r"DICOM files skipped[^|]*\|\s*7\s*\|", flow)


def test_error_in_a_later_file_of_a_series_does_not_leak_its_path(curated, tmp_path) -> None:
    dicom = copy_dicom(curated.archive.root, tmp_path / "archive")
    first = sorted(dicom.rglob("*.dcm"))[0]
    second = first.with_name(first.stem + "_part2.dcm")

    def second_instance(ds) -> None:
        ds.InstanceNumber = 2
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()

    edit_dicom(first, second_instance, second)
    second.write_bytes(second.read_bytes()[: second.stat().st_size // 2])

    run_curate(dicom, tmp_path / "dataset", key_file=curated.key_file)

    assert dataset_text_hits(tmp_path / "dataset", IDENTITY_MARKERS) == []


def test_duplicate_copy_of_a_file_does_not_duplicate_frames(curated, tmp_path) -> None:
    dicom = copy_dicom(curated.archive.root, tmp_path / "archive")
    first = sorted(dicom.rglob("*.dcm"))[0]
    shutil.copy(first, first.with_name(first.stem + " (copy).dcm"))

    run_curate(dicom, tmp_path / "dataset", key_file=curated.key_file)

    result = CuratedDataset(tmp_path / "dataset")
    counts = result.series.set_index("series_uid")["n_frames"]
    expected = curated.dataset.series.set_index("series_uid")["n_frames"]
    pd.testing.assert_series_equal(counts.sort_index(), expected.sort_index())


def _write_malformed_angle(real: Path, dest: Path) -> None:
    def new_series(ds) -> None:
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PositionerPrimaryAngle = "12.5"

    edit_dicom(real, new_series, dest)
    data = dest.read_bytes()
    element = b"\x18\x00\x10\x15DS\x04\x0012.5"  # (0018,1510) DS, length 4, explicit VR LE
    assert data.count(element) == 1
    dest.write_bytes(data.replace(element, b"\x18\x00\x10\x15DS\x04\x00n/a "))


def test_malformed_header_value_does_not_abort_the_run(curated, tmp_path) -> None:
    dicom = copy_dicom(curated.archive.root, tmp_path / "archive")
    _write_malformed_angle(sorted(dicom.rglob("*.dcm"))[0], dicom / "malformed.dcm")

    summary = run_curate(dicom, tmp_path / "dataset", key_file=curated.key_file)

    assert summary.kept_series >= curated.summary.kept_series


def test_invalid_mask_frame_number_does_not_abort_the_run(curated, tmp_path) -> None:
    dicom = copy_dicom(curated.archive.root, tmp_path / "archive")
    kept = curated.dataset.series.dropna(subset=["dsa_source"])["series_uid"]
    real = next(p for p in sorted(dicom.rglob("*.dcm"))
                if str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
                in set(kept))  # fmt: skip

    def zero_mask(ds) -> None:
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.MaskSubtractionSequence[0].MaskFrameNumbers = [0]

    edit_dicom(real, zero_mask, dicom / "mask_zero.dcm")

    summary = run_curate(dicom, tmp_path / "dataset", key_file=curated.key_file)

    assert summary.kept_series >= curated.summary.kept_series


# --------------------------------------------------------------------------- resuming


def _stored(root: Path, name: str = "frames.zarr") -> int:
    """Frames in DATASET/frames.zarr (or native.zarr), committed or not."""
    return int(zarr.open_array(root / name, mode="r").shape[0])


def _copy_dataset(curated, dest: Path) -> Path:
    shutil.copytree(curated.out, dest)
    return dest


def _assert_same_dataset(result: CuratedDataset, reference: CuratedDataset) -> None:
    pd.testing.assert_frame_equal(result.series, reference.series)
    pd.testing.assert_frame_equal(result.frames, reference.frames)
    assert _stored(result.root) == _stored(result.root, "native.zarr") == len(result.frames)
    ids = reference.frames["frame_id"].to_numpy()
    np.testing.assert_array_equal(result.read(ids), reference.read(ids))
    np.testing.assert_array_equal(result.read(ids, "native"), reference.read(ids, "native"))


def _count_decodes(monkeypatch: pytest.MonkeyPatch, fail_after: int | None = None) -> list:
    """Wraps curate's decode_series; raises KeyboardInterrupt on call `fail_after` + 1."""
    calls: list = []
    real = curate_module.decode_series

    def counting(files, size):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(files)
        return real(files, size)

    monkeypatch.setattr(curate_module, "decode_series", counting)
    return calls


def test_second_run_resumes_without_decoding_again(curated, tmp_path, monkeypatch) -> None:
    out = _copy_dataset(curated, tmp_path / "dataset")
    calls = _count_decodes(monkeypatch)

    summary = run_curate(curated.dicom, out, key_file=curated.key_file)

    assert calls == []
    assert summary.resumed_series == summary.series == curated.summary.series
    assert summary.kept_series == curated.summary.kept_series
    assert summary.frames == curated.summary.frames
    _assert_same_dataset(CuratedDataset(out), curated.dataset)
    assert (out / "skipped.csv").read_text() == (curated.out / "skipped.csv").read_text()


def test_resume_picks_up_new_series_only(curated, tmp_path, monkeypatch) -> None:
    dicom = copy_dicom(curated.archive.root, tmp_path / "archive")
    later = sorted(dicom.rglob("*.dcm"))[-3:]
    moved = tmp_path / "later"
    moved.mkdir()
    for path in later:
        path.rename(moved / f"{path.parent.parent.name}_{path.parent.name}_{path.name}")
    out = tmp_path / "dataset"
    run_curate(dicom, out, key_file=curated.key_file)
    for path in moved.iterdir():
        folder, study, name = path.name.split("_")
        path.rename(dicom / folder / study / name)
    calls = _count_decodes(monkeypatch)

    summary = run_curate(dicom, out, key_file=curated.key_file)

    kept_later = curated.dataset.series.dropna(subset=["dsa_source"])
    assert summary.resumed_series == curated.summary.series - len(later)
    assert 0 < len(calls) <= len(later)
    result = CuratedDataset(out)
    assert set(result.series["series_uid"]) == set(curated.dataset.series["series_uid"])
    assert set(result.frames["series_uid"]) == set(kept_later["series_uid"])
    assert len(result.frames) == len(curated.dataset.frames) == _stored(result.root)


@pytest.mark.parametrize("commit_every_s", [0.0, 1e9])
@pytest.mark.parametrize("interrupt_after", [0, 3])
def test_interrupted_run_resumes_to_the_same_dataset(
    curated, tmp_path, monkeypatch, commit_every_s: float, interrupt_after: int
) -> None:
    out = tmp_path / "dataset"
    _count_decodes(monkeypatch, fail_after=interrupt_after)

    with pytest.raises(KeyboardInterrupt):
        run_curate(curated.dicom, out, key_file=curated.key_file, commit_every_s=commit_every_s)

    monkeypatch.undo()
    decoded_frames = curated.dataset.series.dropna(subset=["dsa_source"])["n_frames"]
    # Frames are appended before their commit: they may be there without table rows.
    assert _stored(out) == decoded_frames.iloc[:interrupt_after].sum()
    assert _stored(out, "native.zarr") == _stored(out)
    if (out / "frames.parquet").exists():  # what was committed is consistent
        partial = CuratedDataset(out)
        assert _stored(partial.root) >= len(partial.frames)
        decoded = partial.series["dsa_source"].notna().sum()
        assert decoded == (interrupt_after if commit_every_s == 0 else 0)
    calls = _count_decodes(monkeypatch)

    summary = run_curate(curated.dicom, out, key_file=curated.key_file)

    committed = interrupt_after if commit_every_s == 0 else 0
    assert len(calls) == curated.summary.kept_series - committed
    assert summary.frames == curated.summary.frames
    result = CuratedDataset(out)
    assert _stored(result.root) == len(result.frames) == len(curated.dataset.frames)
    _assert_same_dataset(result, curated.dataset)


@pytest.mark.parametrize(("option", "value"), [("size", 32), ("seed", 1)])
def test_resuming_with_other_size_or_seed_fails_with_one_line(
    curated, tmp_path, option: str, value: int
) -> None:
    out = _copy_dataset(curated, tmp_path / "dataset")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    with pytest.raises(ValueError, match=f"--{option}") as info:
        run_curate(curated.dicom, out, key_file=curated.key_file, **{option: value})

    message = str(info.value)
    assert "\n" not in message and str(out) in message
    assert f"--{option} {64 if option == 'size' else 0}" in message
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resuming_with_other_rules_is_refused_or_relabels(curated, tmp_path) -> None:
    out = _copy_dataset(curated, tmp_path / "dataset")
    cca_anterior = CirculationRules(
        rules=[CirculationRule(pattern=r"\bCCA\b", circulation="anterior"), *DEFAULT_RULES.rules]
    )

    try:
        run_curate(curated.dicom, out, key_file=curated.key_file, rules=cca_anterior)
    except ValueError as err:  # refusing is one correct answer
        assert "rules" in str(err) and "\n" not in str(err)
        return
    series = CuratedDataset(out).series  # relabelling is the other
    cca = series[series["description"].str.contains("CCA")]
    assert len(cca) > 0 and (cca["circulation"] == "anterior").all()


def test_too_small_size_or_missing_archive_raise(tmp_path) -> None:
    with pytest.raises(ValueError, match="--size"):
        run_curate(tmp_path, tmp_path / "dataset", size=8)
    with pytest.raises(FileNotFoundError, match="archive directory not found"):
        run_curate(tmp_path / "missing", tmp_path / "dataset")


# --------------------------------------------------------------------------- splits


def test_splits_are_patient_disjoint(curated) -> None:
    dataset = curated.dataset
    for table in (dataset.series, dataset.frames):
        assert (table.groupby("patient_id")["split"].nunique() == 1).all()
        assert set(table["split"]) <= set(SPLITS)
    assert dataset.series["patient_id"].nunique() == curated.archive.truth["patient_id"].nunique()
    per_patient = dataset.series.groupby("patient_id")["split"].first()
    for patient, split in per_patient.items():
        assert re.fullmatch(r"P[0-9a-f]{16}", patient)
        assert split == split_of(patient, 0, (0.8, 0.1, 0.1))


def test_split_of_is_seeded_stable_and_near_the_fractions() -> None:
    patients = [f"P{i:016x}" for i in range(3000)]
    fractions = (0.8, 0.1, 0.1)

    first = [split_of(p, 0, fractions) for p in patients]

    assert first == [split_of(p, 0, fractions) for p in patients]
    shares = pd.Series(first).value_counts(normalize=True)
    for name, share in zip(SPLITS, fractions, strict=True):
        assert shares[name] == pytest.approx(share, abs=0.03)
    other = [split_of(p, 1, fractions) for p in patients]
    assert np.mean(np.array(first) != np.array(other)) > 0.2
    with pytest.raises(ValueError, match="fractions"):
        split_of("P0", 0, (0.5, 0.3, 0.3))


def test_splits_are_stable_across_runs_and_change_with_the_seed(curated, tmp_path) -> None:
    fractions = (0.4, 0.3, 0.3)
    reference = curated.dataset.series.groupby("patient_id")["split"].first()
    patients = list(reference.index)
    base = [split_of(p, 0, fractions) for p in patients]
    seed = next(s for s in range(1, 500) if [split_of(p, s, fractions) for p in patients] != base)

    splits = {}
    for name, run_seed in [("a", 0), ("b", 0), ("c", seed)]:
        out = tmp_path / name
        run_curate(curated.dicom, out, key_file=curated.key_file, seed=run_seed,
                   split_fractions=fractions)  # fmt: skip
        series = CuratedDataset(out).series
        splits[name] = series.groupby("patient_id")["split"].first()
        frames = CuratedDataset(out).frames
        assert (frames.groupby("patient_id")["split"].nunique() == 1).all()

    pd.testing.assert_series_equal(splits["a"], splits["b"])
    assert list(splits["a"][patients]) == base
    assert list(splits["c"][patients]) == [split_of(p, seed, fractions) for p in patients]
    assert list(splits["c"][patients]) != base


# --------------------------------------------------------------------------- privacy


def test_no_original_identity_anywhere_in_the_dataset(curated, messy) -> None:
    for root in (curated.out, messy[0]):
        assert "PHANTOM" not in str(root).upper() and "PATIENT" not in str(root).upper()
        names = {p.name for p in root.iterdir()}
        assert {"series.parquet", "frames.parquet", "frames.zarr", "native.zarr", "skipped.csv",
                "report.md", "report.html", "curation.json"} <= names  # fmt: skip

        assert dataset_text_hits(root, IDENTITY_MARKERS) == []


def test_key_stays_outside_the_dataset(curated) -> None:
    key = curated.key_file.read_text().strip()

    assert not curated.key_file.is_relative_to(curated.out)
    assert dataset_text_hits(curated.out, (key,)) == []


def test_default_key_is_created_beside_the_dataset(curated, tmp_path) -> None:
    out = tmp_path / "dataset"
    curate(curated.dicom, out, DEFAULT_RULES, CurateOptions(size=32))

    key = tmp_path / "dataset.pseudonym-key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    patients = set(CuratedDataset(out).series["patient_id"])
    assert patients.isdisjoint(set(curated.dataset.series["patient_id"]))  # another key


# --------------------------------------------------------------------------- report


def _markdown_table(text: str, heading: str) -> pd.DataFrame:
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return pd.DataFrame(cells[2:], columns=cells[0])


def test_report_table1_counts_match_frames(curated) -> None:
    text = (curated.out / "report.md").read_text()
    frames = curated.dataset.frames
    kept = frames[frames["circulation"].isin(["anterior", "posterior"])]

    table = _markdown_table(text, f"All stored frames of kept series (N = {len(kept)})")

    rows = list(zip(table["Circulation"], table["Plane"], table["Prim./Sec. (°)"], strict=True))
    assert rows == [("AC", "A", "0/0"), ("PC", "A", "0/0"), ("AC", "B", "-90/0"),
                    ("PC", "B", "-90/0"), ("Others", "", "")]  # fmt: skip
    counts = kept["view"].value_counts()
    expected = [int(counts.get(v, 0)) for v in ("AC A", "PC A", "AC B", "PC B", "Others")]
    assert [int(c) for c in table["Count"]] == expected
    assert sum(expected) == len(kept)
    shares = [float(s) for s in table["Proportion (%)"]]
    assert sum(shares) == pytest.approx(100.0, abs=0.05)
    assert all(c > 0 for c in expected[:4])  # the phantom has every canonical view

    flow = _markdown_table(text, "Curation flow")
    steps = dict(zip(flow["Step"], flow["Count"].astype(int), strict=True))
    assert steps["DSA series found"] == curated.summary.series
    assert steps["series kept (anterior or posterior circulation)"] == curated.summary.kept_series
    splits = _markdown_table(text, "Patient splits")
    assert splits["frames"].astype(int).sum() == len(kept)
    html = (curated.out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "AC" in html and "Others" in html
