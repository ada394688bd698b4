"""Examination plans: which studies, injections, runs, angles and frame timings a patient gets.

Each run is one biplane acquisition: two DICOM series (Plane A and Plane B) of the same injection,
projections of the same 3D tree. About half of the runs use oblique angles, so that roughly half
of the arterial frames fall outside the four canonical views, as in Table 1 of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Injection kinds and the truth circulation of each (what the vessels in the picture belong
#: to). ICA and VA runs are kept by curation; the others must be excluded, "unlabelled" because
#: its description names no vessel.
CIRCULATION_OF = {
    "ICA": "anterior",
    "VA": "posterior",
    "ECA": "external",
    "CCA": "common_carotid",
    "arch": "arch",
    "unlabelled": "anterior",  # ICA vessels behind a description no rule recognises
}

_DESCRIPTIONS = {
    ("ICA", "en"): ["ICA {side_en}", "{side_en_short} ICA", "Internal carotid {side_en}"],
    ("ICA", "de"): ["ICA {side_de}", "A. carotis interna {side_de_short}",
                    "Carotis interna {side_de}"],
    ("VA", "en"): ["VA {side_en}", "Vertebral {side_en}", "{side_en_short} vertebral artery"],
    ("VA", "de"): ["A. vertebralis {side_de_short}", "Vertebralis {side_de}", "VA {side_de}"],
    ("ECA", "en"): ["ECA {side_en}", "External carotid {side_en}"],
    ("ECA", "de"): ["ECA {side_de}", "A. carotis externa {side_de_short}"],
    ("CCA", "en"): ["CCA {side_en}", "Common carotid {side_en}"],
    ("CCA", "de"): ["CCA {side_de}", "A. carotis communis {side_de_short}"],
    ("arch", "en"): ["Aortic arch", "Arch overview"],
    ("arch", "de"): ["Aortenbogen", "Bogen Übersicht"],
    ("unlabelled", "en"): ["Run {run}", "Series {run}"],
    ("unlabelled", "de"): ["Serie {run}", "Lauf {run}"],
}  # fmt: skip
_SIDE_WORDS = {
    1: {"side_en": "left", "side_en_short": "L", "side_de": "links", "side_de_short": "li"},
    -1: {"side_en": "right", "side_en_short": "R", "side_de": "rechts", "side_de_short": "re"},
}


@dataclass(frozen=True)
class PlaneGeometry:
    """C-arm angles of one plane of a run (degrees)."""

    plane: str
    primary: float
    secondary: float


@dataclass(frozen=True)
class RunPlan:
    """One biplane acquisition.

    Attributes:
        injection: a key of CIRCULATION_OF.
        side: +1 left, -1 right, 0 for midline/both (arch).
        description: Series Description as a site would write it.
        protocol_name: Protocol Name.
        planes: geometry of Plane A and Plane B.
        frame_time_ms: time between frames.
        n_frames: frames per series.
        n_mask: leading contrast-free frames averaged into the mask.
        oblique: whether the run uses non-canonical angles.
    """

    injection: str
    side: int
    description: str
    protocol_name: str
    planes: tuple[PlaneGeometry, PlaneGeometry]
    frame_time_ms: float
    n_frames: int
    n_mask: int
    oblique: bool


@dataclass(frozen=True)
class StudyPlan:
    """One examination (a DICOM study) with its runs."""

    runs: tuple[RunPlan, ...]
    language: str


def plan_patient(
    rng: np.random.Generator, dominant_va: int, oblique_share: float
) -> list[StudyPlan]:
    """Draws 1-2 studies for a patient, each with several biplane runs."""
    n_studies = 1 if rng.random() < 0.6 else 2
    language = "de" if rng.random() < 0.5 else "en"
    return [_plan_study(rng, dominant_va, oblique_share, language) for _ in range(n_studies)]


def _plan_study(rng, dominant_va, oblique_share, language) -> StudyPlan:
    injections: list[tuple[str, int]] = []
    for side in (1, -1):
        if rng.random() < 0.75:
            injections.append(("ICA", side))
    if rng.random() < 0.7:
        injections.append(("VA", dominant_va))
    if not injections:
        injections.append(("ICA", int(rng.choice([1, -1]))))
    for kind, p in (("ECA", 0.2), ("CCA", 0.15), ("arch", 0.06), ("unlabelled", 0.08)):
        if rng.random() < p:
            injections.append((kind, 0 if kind == "arch" else int(rng.choice([1, -1]))))
    runs: list[RunPlan] = []
    for kind, side in injections:
        for _ in range(1 + int(rng.random() < 0.35)):
            oblique = bool(rng.random() < oblique_share)
            runs.append(_plan_run(rng, kind, side, language, len(runs) + 1, oblique))
    return StudyPlan(runs=tuple(runs), language=language)


def _plan_run(rng, kind, side, language, run_number, oblique) -> RunPlan:
    fps = float(rng.choice([2.0, 3.0, 4.0], p=[0.3, 0.4, 0.3]))
    n_frames = int(np.clip(round(rng.uniform(5.5, 8.0) * fps), 8, 20))
    template = str(rng.choice(_DESCRIPTIONS[(kind, language)]))
    words = _SIDE_WORDS.get(side, _SIDE_WORDS[1])
    protocol = f"Neuro DSA {fps:.0f}F/s" if language == "en" else f"Kopf DSA {fps:.0f}B/s"
    return RunPlan(
        injection=kind,
        side=side,
        description=template.format(run=run_number, **words),
        protocol_name=protocol,
        planes=(_angles(rng, "A", oblique), _angles(rng, "B", oblique)),
        frame_time_ms=1000.0 / fps,
        n_frames=n_frames,
        n_mask=int(rng.integers(1, 4)),
        oblique=oblique,
    )


def _angles(rng: np.random.Generator, plane: str, oblique: bool) -> PlaneGeometry:
    """Canonical angles jitter within a few degrees; obliques use +-15..45 / +-10..30 degrees."""
    base = 0.0 if plane == "A" else -90.0
    jitter = lambda: float(np.clip(rng.normal(0, 1.4), -3.5, 3.5))  # noqa: E731
    if not oblique:
        return PlaneGeometry(plane, round(base + jitter(), 1), round(jitter(), 1))
    sign = lambda: float(rng.choice([-1.0, 1.0]))  # noqa: E731
    primary, secondary = base + jitter(), jitter()
    tilt = rng.random()
    if tilt < 0.7:
        primary = base + sign() * rng.uniform(15, 45)
    if tilt > 0.4:
        secondary = sign() * rng.uniform(10, 30)
    return PlaneGeometry(plane, round(primary, 1), round(secondary, 1))
