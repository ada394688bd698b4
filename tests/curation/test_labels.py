"""Series labels: plane, per-frame angles, canonical views, exclusion of unlabelled series."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from angiosynth.conditions import canonical_view
from angiosynth.curation.labels import frame_angles, plane_of
from angiosynth.dicom.headers import Header, read_header

from .helpers import edit_dicom, run_curate, write_series

BASE = Header(
    path=Path("x.dcm"),
    sop_class="XA",
    series_uid="2.25.1",
    study_uid="2.25.2",
    sop_uid="2.25.3",
    patient_id="ID",
    patient_name="NAME",
    texts=("ICA", "", ""),
    image_type=("ORIGINAL", "PRIMARY"),
    plane_identification="",
    primary_angle=None,
    secondary_angle=None,
    primary_increments=(),
    secondary_increments=(),
    n_frames=4,
    frame_time_ms=250.0,
    instance_number=1,
    transfer_syntax="1.2.840.10008.1.2.1",
)


def header(**changes: object) -> Header:
    return replace(BASE, **changes)


@pytest.mark.parametrize(
    ("value3", "plane"), [("BIPLANE A", "A"), ("BIPLANE B", "B"), ("SINGLE PLANE", "single")]
)
def test_plane_from_image_type(value3: str, plane: str) -> None:
    # Image Type wins over Plane Identification and over the angle.
    h = header(
        image_type=("ORIGINAL", "PRIMARY", value3),
        plane_identification="PLANE B" if plane == "A" else "PLANE A",
        primary_angle=-90.0 if plane == "A" else 0.0,
    )

    assert plane_of(h) == (plane, "image_type")


@pytest.mark.parametrize(
    ("identification", "plane"), [("PLANE A", "A"), ("PLANE B", "B"), ("MONOPLANE", "single")]
)
def test_plane_from_enhanced_xa_plane_identification(identification: str, plane: str) -> None:
    h = header(
        sop_class="Enhanced XA",
        image_type=("ORIGINAL", "PRIMARY", "NONE"),
        plane_identification=identification,
        primary_angle=45.0,
    )

    assert plane_of(h) == (plane, "plane_identification")


@pytest.mark.parametrize(
    ("primary", "plane"),
    [(0.0, "A"), (-90.0, "B"), (44.0, "A"), (46.0, "B"), (180.0, "A"), (-180.0, "A"),
     (90.0, "B"), (-44.0, "A"), (-46.0, "B"), (134.0, "B"), (136.0, "A"), (45.0, "A")],
)  # fmt: skip
def test_plane_falls_back_to_the_primary_angle(primary: float, plane: str) -> None:
    assert plane_of(header(primary_angle=primary, secondary_angle=0.0)) == (plane, "angle")


def test_plane_unknown_without_type_identification_or_angle() -> None:
    assert plane_of(header()) == ("unknown", "unknown")
    assert plane_of(header(image_type=("ORIGINAL", "PRIMARY", "BIPLANE C"))) == (
        "unknown",
        "unknown",
    )


def test_static_angles_repeat_for_every_frame() -> None:
    primary, secondary = frame_angles(header(primary_angle=-30.0, secondary_angle=12.5))

    np.testing.assert_array_equal(primary, np.full(4, -30.0))
    np.testing.assert_array_equal(secondary, np.full(4, 12.5))


def test_per_frame_angles_accumulate_the_increments() -> None:
    h = header(
        primary_angle=-3.0,
        secondary_angle=1.0,
        primary_increments=(0.0, 2.0, 2.0, 4.0),
        secondary_increments=(0.5, -1.0, -1.0, -1.0),
    )

    primary, secondary = frame_angles(h)

    np.testing.assert_allclose(primary, [-3.0, -1.0, 1.0, 5.0])
    # The first increment is the first frame's offset from the stated angle.
    np.testing.assert_allclose(secondary, [1.5, 0.5, -0.5, -1.5])


def test_increments_of_the_wrong_length_are_ignored() -> None:
    primary, _ = frame_angles(header(primary_angle=10.0, secondary_angle=0.0,
                                     primary_increments=(1.0, 1.0)))  # fmt: skip

    np.testing.assert_array_equal(primary, np.full(4, 10.0))


def test_missing_angles_are_nan() -> None:
    primary, secondary = frame_angles(header(secondary_angle=3.0))

    assert np.isnan(primary).all() and primary.shape == (4,)
    np.testing.assert_array_equal(secondary, np.full(4, 3.0))


@pytest.mark.parametrize(
    ("circulation", "plane", "primary", "secondary", "view"),
    [
        ("anterior", "A", 5.0, 5.0, "AC A"),
        ("anterior", "A", -5.0, -5.0, "AC A"),
        ("posterior", "A", 5.0, -5.0, "PC A"),
        ("posterior", "A", 5.1, 0.0, "Others"),
        ("anterior", "B", -95.0, 0.0, "AC B"),
        ("anterior", "B", -85.0, 5.0, "AC B"),
        ("posterior", "B", -95.0, -5.0, "PC B"),
        ("posterior", "B", -95.1, 0.0, "Others"),
        ("anterior", "B", -84.9, 0.0, "Others"),
        ("anterior", "B", -90.0, 5.1, "Others"),
        ("anterior", "B", 0.0, 0.0, "Others"),
        ("anterior", "single", 0.0, 0.0, "Others"),
        ("excluded", "A", 0.0, 0.0, ""),
    ],
)
def test_canonical_view_bins_are_inclusive_at_five_degrees(
    circulation: str, plane: str, primary: float, secondary: float, view: str
) -> None:
    assert canonical_view(circulation, plane, primary, secondary) == view


def _flat_series(path: Path, **changes: object) -> Path:
    frames = np.full((4, 48, 48), 3000, dtype=np.uint16)
    frames[2:, 20:28, :] = 2000
    return write_series(path, frames, **changes)


def test_series_without_angles_or_plane_are_excluded_with_a_reason(tmp_path: Path) -> None:
    dicom = tmp_path / "archive" / "dicom"
    _flat_series(dicom / "good.dcm", series_uid="2.25.11", sop_instance_uid="2.25.21")
    no_angles = _flat_series(dicom / "no_angles.dcm", series_uid="2.25.12",
                             sop_instance_uid="2.25.22")  # fmt: skip
    no_plane = _flat_series(dicom / "no_plane.dcm", series_uid="2.25.13",
                            sop_instance_uid="2.25.23")  # fmt: skip

    def drop_angles(ds) -> None:
        del ds.PositionerPrimaryAngle
        del ds.PositionerSecondaryAngle

    def drop_plane_and_angles(ds) -> None:
        drop_angles(ds)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]

    edit_dicom(no_angles, drop_angles)
    edit_dicom(no_plane, drop_plane_and_angles)
    assert read_header(no_angles).primary_angle is None

    summary = run_curate(dicom, tmp_path / "dataset")

    series = pd.read_parquet(tmp_path / "dataset" / "series.parquet").set_index("series_uid")
    assert pd.isna(series.loc["2.25.11", "excluded_reason"])
    assert series.loc["2.25.11", "view"] == "AC A"
    assert series.loc["2.25.12", "excluded_reason"] == "missing positioner angles"
    assert series.loc["2.25.12", "circulation"] == "excluded"
    assert series.loc["2.25.13", "excluded_reason"] == "unknown plane"
    assert series.loc["2.25.13", "plane"] == "unknown"
    assert summary.excluded == {"missing positioner angles": 1, "unknown plane": 1}
    frames = pd.read_parquet(tmp_path / "dataset" / "frames.parquet")
    assert set(frames["series_uid"]) == {"2.25.11"}


def test_moving_positioner_gives_per_frame_views(tmp_path: Path) -> None:
    dicom = tmp_path / "archive" / "dicom"
    path = _flat_series(dicom / "moving.dcm", plane="B", primary_angle=-96.0,
                        secondary_angle=0.0)  # fmt: skip

    def moving(ds) -> None:
        ds.PositionerMotion = "DYNAMIC"
        ds.PositionerPrimaryAngleIncrement = [0.0, 2.0, 2.0, 8.0]
        ds.PositionerSecondaryAngleIncrement = [0.0, 0.0, 0.0, 0.0]

    edit_dicom(path, moving)

    run_curate(dicom, tmp_path / "dataset")

    frames = pd.read_parquet(tmp_path / "dataset" / "frames.parquet")
    np.testing.assert_allclose(frames["primary_angle"], [-96.0, -94.0, -92.0, -84.0])
    assert list(frames["view"]) == ["Others", "AC B", "AC B", "Others"]
    assert list(frames["plane"]) == ["B"] * 4
