"""Contrast timing: the gamma-variate bolus, phase truth and contrast in simulated runs."""

from __future__ import annotations

import numpy as np
import pytest

from angiosynth.config import PhantomConfig
from angiosynth.dicom.subtraction import log_subtract
from angiosynth.phantom.bolus import (
    EARLY_ARTERIAL_MAX,
    PHASES,
    Bolus,
    classify_phase,
    gamma_variate,
)
from angiosynth.phantom.simulate import PatientSimulation, RunResult, simulate_patient
from angiosynth.phantom.vessels import SegmentClass

SIZE = 96


@pytest.fixture(scope="module")
def sim() -> PatientSimulation:
    """One simulated patient (ICA and VA runs) at a small frame size."""
    return simulate_patient(0, 0, PhantomConfig(image_size=SIZE))


def _runs(sim: PatientSimulation) -> list[RunResult]:
    return [run for study in sim.runs for run in study]


def _inside(shutter: tuple[int, int, int, int]) -> np.ndarray:
    left, right, upper, lower = shutter
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[upper - 1 : lower, left - 1 : right] = True
    return inside


def _best_arterial_frame(run: RunResult) -> int:
    arterial = [i for i, p in enumerate(run.phases) if p == "arterial"]
    return max(arterial, key=lambda i: run.opacity[i, 0])


@pytest.mark.parametrize(
    ("alpha", "beta", "t0"), [(2.2, 0.45, 1.0), (1.8, 0.35, 0.0), (3.0, 0.6, 2.5)]
)
def test_gamma_variate_peaks_at_one(alpha: float, beta: float, t0: float) -> None:
    t = np.linspace(t0 - 1.0, t0 + 10.0, 22001)

    curve = gamma_variate(t, t0, alpha, beta)

    assert gamma_variate(t0 + alpha * beta, t0, alpha, beta) == pytest.approx(1.0, rel=1e-12)
    assert curve.max() == pytest.approx(1.0, rel=1e-9)
    assert t[curve.argmax()] == pytest.approx(t0 + alpha * beta, abs=1e-3)
    assert np.all(curve[t <= t0] == 0)
    assert np.all(curve[t > t0] > 0)
    assert np.all(curve >= 0) and np.all(curve <= 1)


def test_gamma_variate_broadcasts_times_against_arrivals() -> None:
    t = np.array([0.0, 1.0, 2.0])[:, None]
    t0 = np.array([0.0, 0.5, 5.0])[None, :]

    c = gamma_variate(t, t0, 2.0, 0.5)

    assert c.shape == (3, 3)
    assert c[1, 0] == pytest.approx(1.0)  # t - t0 = alpha beta
    assert np.all(c[:, 2] == 0)  # not arrived yet


def test_bolus_reaches_distal_nodes_later() -> None:
    bolus = Bolus(t_inject=1.0, arterial_speed_mm_s=300.0)
    path = np.array([0.0, 60.0, 150.0])
    t = np.arange(0.0, 6.0, 0.01)

    conc = bolus.arterial(t, path)  # (T, N)

    peaks = t[conc.argmax(axis=0)]
    np.testing.assert_allclose(peaks, 1.0 + path / 300.0 + bolus.alpha * bolus.beta, atol=0.01)
    first = [t[np.flatnonzero(conc[:, j] > 0)[0]] for j in range(3)]
    assert first == sorted(first) and first[0] > 1.0
    assert bolus.capillary(t, path).argmax() > conc[:, -1].argmax()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1.0, 1.0, 0.9, 0.9, 0.9, True), "mask"),
        ((1.1, 1.0, 0.2, 0.0, 0.0, True), "early_arterial"),
        ((1.2, 1.0, 0.3, 0.0, 0.0, True), "arterial"),
        ((1.5, 1.0, 0.8, 0.3, 0.1, True), "arterial"),
        ((2.5, 1.0, 0.4, 0.9, 0.2, False), "capillary"),
        ((4.0, 1.0, 0.1, 0.3, 0.8, False), "venous"),
    ],
)
def test_classify_phase(args: tuple, expected: str) -> None:
    t, t_inject, a, c, v, rising = args

    assert classify_phase(t, t_inject, a, c, v, rising=rising) == expected


def test_runs_have_consistent_timing(sim: PatientSimulation) -> None:
    runs = _runs(sim)

    assert len(runs) == sum(len(s.runs) for s in sim.studies) >= 1
    for run in runs:
        plan = run.plan
        assert len(run.phases) == len(run.times_s) == plan.n_frames
        np.testing.assert_allclose(run.times_s, np.arange(plan.n_frames) * plan.frame_time_ms / 1e3)
        assert run.opacity.shape == (plan.n_frames, 3)
        assert np.all(run.opacity >= 0) and np.all(run.opacity <= 1.01)
        assert 1 <= plan.n_mask < plan.n_frames
        assert len(run.planes) == 2
        for plane in run.planes:
            assert plane.frames.shape == plane.labels.shape == (plan.n_frames, SIZE, SIZE)
            assert plane.frames.dtype == np.uint16 and plane.labels.dtype == np.uint8
            assert plane.labels.max() <= SegmentClass.VENOUS


def test_phases_follow_the_bolus(sim: PatientSimulation) -> None:
    order = {p: i for i, p in enumerate(PHASES)}
    for run in _runs(sim):
        phases = run.phases
        n_mask = run.plan.n_mask

        assert set(phases) <= set(PHASES)
        assert [p == "mask" for p in phases] == [i < n_mask for i in range(len(phases))]
        ranks = [order[p] for p in phases]
        assert ranks == sorted(ranks), phases
        assert "arterial" in phases, phases
        if "venous" in phases:
            assert phases.index("arterial") < phases.index("venous")
        first_arterial = phases.index("arterial")
        assert run.opacity[first_arterial, 0] >= EARLY_ARTERIAL_MAX


def test_mask_frames_are_contrast_free(sim: PatientSimulation) -> None:
    for run in _runs(sim):
        n_mask = run.plan.n_mask
        best = _best_arterial_frame(run)
        for plane in run.planes:
            inside = _inside(plane.shutter)
            dsa = log_subtract(plane.frames, tuple(range(1, n_mask + 1)))
            vessels = (plane.labels[best] > 0) & inside

            assert not plane.labels[:n_mask].any()
            assert run.opacity[:n_mask].max() == 0
            noise = np.abs(dsa[:n_mask][:, inside]).mean()
            assert noise < 0.1 * dsa[best][vessels].mean()


def test_arterial_frame_shows_labelled_vessels(sim: PatientSimulation) -> None:
    for run in _runs(sim):
        best = _best_arterial_frame(run)
        for plane in run.planes:
            inside = _inside(plane.shutter)
            labels = plane.labels[best]
            dsa = log_subtract(plane.frames, tuple(range(1, run.plan.n_mask + 1)))[best]
            vessels = (labels > 0) & inside
            background = (labels == 0) & inside

            assert {1, 2, 3} <= set(np.unique(labels).tolist())
            assert 0.002 < vessels.mean() < 0.5
            assert dsa[vessels].mean() > 0.05
            assert dsa[vessels].mean() > 5 * np.abs(dsa[background]).mean()
            # Thick (proximal) vessels absorb more than thin (peripheral) ones.
            proximal = (labels == SegmentClass.PROXIMAL) & inside
            peripheral = (labels == SegmentClass.PERIPHERAL) & inside
            assert dsa[proximal].mean() > dsa[peripheral].mean()


def test_veins_fill_after_the_arteries(sim: PatientSimulation) -> None:
    checked = 0
    for run in _runs(sim):
        best = _best_arterial_frame(run)
        last = len(run.phases) - 1
        if run.opacity[last, 2] < 0.1:
            continue  # a short run may end before the veins fill
        checked += 1
        assert run.opacity[last, 2] > run.opacity[best, 2]
        for plane in run.planes:
            venous = plane.labels == SegmentClass.VENOUS
            assert venous[last].sum() > venous[best].sum()
    assert checked > 0


def test_labelled_vessels_are_not_clipped(sim: PatientSimulation) -> None:
    top = 2**12 - 1
    for run in _runs(sim):
        for plane in run.planes:
            clipped = plane.frames == top
            assert not (clipped & (plane.labels > 0)).any()
