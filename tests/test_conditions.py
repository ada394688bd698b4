"""View labels of the paper's conditions (circulation x plane x canonical angles)."""

from __future__ import annotations

import pytest

from angiosynth.conditions import CONDITIONS, VIEWS, canonical_view


@pytest.mark.parametrize(
    ("circulation", "plane", "primary", "secondary", "expected"),
    [
        ("anterior", "A", 0.0, 0.0, "AC A"),
        ("posterior", "A", 0.0, 0.0, "PC A"),
        ("anterior", "B", -90.0, 0.0, "AC B"),
        ("posterior", "B", -90.0, 0.0, "PC B"),
        # The +-5 degree bins are inclusive on both angles.
        ("anterior", "A", 5.0, 0.0, "AC A"),
        ("anterior", "A", -5.0, 0.0, "AC A"),
        ("anterior", "A", 0.0, 5.0, "AC A"),
        ("anterior", "A", 5.0, -5.0, "AC A"),
        ("anterior", "A", 5.1, 0.0, "Others"),
        ("anterior", "A", -5.1, 0.0, "Others"),
        ("anterior", "A", 0.0, 5.1, "Others"),
        ("anterior", "A", 0.0, -5.1, "Others"),
        ("posterior", "B", -95.0, 0.0, "PC B"),
        ("posterior", "B", -85.0, 0.0, "PC B"),
        ("posterior", "B", -95.0, -5.0, "PC B"),
        ("posterior", "B", -95.1, 0.0, "Others"),
        ("posterior", "B", -84.9, 0.0, "Others"),
        # Plane B at the Plane A angles (and vice versa) is not canonical.
        ("anterior", "B", 0.0, 0.0, "Others"),
        ("anterior", "A", -90.0, 0.0, "Others"),
        ("anterior", "B", 90.0, 0.0, "Others"),
        ("posterior", "A", 30.0, 20.0, "Others"),
    ],
)
def test_canonical_view(
    circulation: str, plane: str, primary: float, secondary: float, expected: str
) -> None:
    assert canonical_view(circulation, plane, primary, secondary) == expected


@pytest.mark.parametrize("circulation", ["external", "common_carotid", "arch", "", "Anterior"])
def test_other_circulations_have_no_view(circulation: str) -> None:
    assert canonical_view(circulation, "A", 0.0, 0.0) == ""
    assert canonical_view(circulation, "B", -90.0, 0.0) == ""


@pytest.mark.parametrize("plane", ["C", "", "a", "AB"])
def test_unknown_plane_is_others(plane: str) -> None:
    assert canonical_view("anterior", plane, 0.0, 0.0) == "Others"
    assert canonical_view("posterior", plane, -90.0, 0.0) == "Others"


def test_view_labels() -> None:
    assert CONDITIONS == ("AC A", "PC A", "AC B", "PC B")
    assert (*CONDITIONS, "Others") == VIEWS
