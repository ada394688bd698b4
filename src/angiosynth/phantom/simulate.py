"""Simulates one patient: vessel trees, examinations, native frames and ground truth.

Image formation for a frame at time t in one plane:

    counts = N0 * collimator * exp(-(mu_bone * L_head(shifted by motion) + mu_iodine * L_iodine(t)))

with L_iodine(t) the line integral of contrast concentration through arteries, the capillary blush
and veins. Quantum noise (Gaussian approximation of Poisson) is added to the counts, then the
detector blurs them; stored values are linear in exposure (Pixel Intensity Relationship LIN), so a
DSA frame is log(mask) - log(frame).

With `pairs`, each frame also gets its no-contrast twin: the same exposure without the iodine term,
with the same standard-normal noise draw scaled to the twin's own exposure. The twin reuses the
frame's draw instead of drawing its own, so the random streams, and hence every written frame,
mask and ground-truth row, are the same with and without pairs; frames before the bolus arrives
(the mask frames) equal their twins exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from angiosynth.config import PhantomConfig
from angiosynth.phantom import anatomy
from angiosynth.phantom.bolus import Bolus, classify_phase
from angiosynth.phantom.geometry import Detector, view_for_angles
from angiosynth.phantom.protocol import RunPlan, StudyPlan, plan_patient
from angiosynth.phantom.render import (
    ellipsoid_chords,
    gaussian_blur,
    project_tree,
    smooth_noise,
)
from angiosynth.phantom.vessels import SegmentClass, VesselTree

#: Attenuation of bone per mm (effective, ~80 kVp); soft tissue is a fraction of it (anatomy).
MU_BONE_PER_MM = 0.05
#: Attenuation per mm of vessel filled with undiluted contrast.
MU_IODINE_PER_MM = 0.125
#: Peak attenuation of the capillary blush.
BLUSH_PEAK = 0.07
#: Peak venous concentration relative to arterial (dilution).
VENOUS_PEAK = 0.55
#: Line integral of contrast attenuation above which a pixel counts as opacified in masks.
MASK_THRESHOLD = 0.02
#: Stored value of the counts through the middle of the head (fraction of the stored range).
STORED_AT_HEAD = 0.15
#: Equalisation filters raise the attenuation of thin regions to this share of the head's.
EQUALISE_FLOOR = 0.75


@dataclass
class PlaneResult:
    """One simulated plane of a run.

    Attributes:
        frames: (F, H, W) uint16 native frames.
        labels: (F, H, W) uint8 vessel masks with SegmentClass values (0 = background).
        shutter: (left, right, upper, lower) 1-based collimator edges.
        noncontrast: (F, H, W) uint16 no-contrast twins of the frames, or None (without pairs).
    """

    frames: np.ndarray
    labels: np.ndarray
    shutter: tuple[int, int, int, int]
    noncontrast: np.ndarray | None = None


@dataclass
class RunResult:
    """A simulated biplane run with its per-frame timing and phase truth."""

    plan: RunPlan
    planes: list[PlaneResult]
    times_s: np.ndarray
    phases: list[str]
    opacity: np.ndarray  # (F, 3) arterial / capillary / venous opacification in [0, 1]


@dataclass
class PatientSimulation:
    """Everything simulated for one patient, before it is written to disk."""

    index: int
    patient: anatomy.Patient
    studies: list[StudyPlan]
    runs: list[list[RunResult]] = field(default_factory=list)


@dataclass(frozen=True)
class Contrast:
    """Contrast concentrations of one run, shared by its two planes.

    Attributes:
        arteries, veins: the opacified trees.
        arterial: (F, N_arteries) concentration per frame and arterial node.
        capillary: (F,) capillary blush concentration.
        venous: (F, N_veins) concentration per frame and venous node.
    """

    arteries: VesselTree
    veins: VesselTree
    arterial: np.ndarray
    capillary: np.ndarray
    venous: np.ndarray


class TreeCache:
    """Grows each vessel tree of a patient once, each from its own seeded stream."""

    def __init__(self, patient: anatomy.Patient, seed_seq: np.random.SeedSequence) -> None:
        self.patient = patient
        self._seed = seed_seq
        self._trees: dict[tuple[str, int], VesselTree] = {}

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(
            np.random.SeedSequence(self._seed.entropy, spawn_key=(*self._seed.spawn_key, *key))
        )

    def arteries(self, injection: str, side: int) -> VesselTree:
        """The arterial forest opacified by an injection (stems first, with path offsets)."""
        key = (injection, side)
        if key not in self._trees:
            self._trees[key] = self._build(injection, side)
        return self._trees[key]

    def veins(self) -> VesselTree:
        """The venous tree of the patient."""
        if ("veins", 0) not in self._trees:
            self._trees[("veins", 0)] = anatomy.grow_veins(self.patient, self._rng(9))
        return self._trees[("veins", 0)]

    def _build(self, injection: str, side: int) -> VesselTree:
        p = self.patient
        if injection in ("ICA", "unlabelled"):
            return anatomy.grow_anterior(side, p, self._rng(1, side + 1))
        if injection == "VA":
            return anatomy.grow_posterior(p, self._rng(2))
        if injection == "ECA":
            return anatomy.grow_external(side, p, self._rng(3, side + 1))
        if injection == "CCA":
            stem = anatomy.grow_common_carotid_stem(side, p)
            offset = float(stem.path_mm.max())
            return VesselTree.concatenate(
                [stem, self.arteries("ICA", side), self.arteries("ECA", side)],
                [0.0, offset, offset],
            )
        if injection == "arch":
            return VesselTree.concatenate(
                [self.arteries("CCA", 1), self.arteries("CCA", -1), self.arteries("VA", 0)],
                [60.0, 40.0, 50.0],
            )
        raise ValueError(f"unknown injection kind {injection!r}")


def simulate_patient(
    index: int, seed: int, config: PhantomConfig, pairs: bool = False
) -> PatientSimulation:
    """Simulates all studies of patient `index` of an archive seeded with `seed`.

    With `pairs`, every plane also holds the no-contrast twins of its frames (module docstring).
    """
    seq = np.random.SeedSequence(seed, spawn_key=(index,))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 0)))
    patient = anatomy.Patient.sample(rng)
    studies = plan_patient(rng, patient.dominant_va, config.oblique_share)
    sim = PatientSimulation(index=index, patient=patient, studies=studies)
    trees = TreeCache(patient, seq)
    detector = Detector(config.image_size, config.pixel_spacing_mm)
    head = anatomy.head_ellipsoids(patient)
    for k, study in enumerate(studies):
        streams = [
            np.random.SeedSequence(seed, spawn_key=(index, 1, k, r)) for r in range(len(study.runs))
        ]
        sim.runs.append(
            [
                simulate_run(run, trees, head, detector, config, stream, pairs)
                for run, stream in zip(study.runs, streams, strict=True)
            ]
        )
    return sim


def simulate_run(
    run: RunPlan,
    trees: TreeCache,
    head: list[anatomy.Ellipsoid],
    detector: Detector,
    config: PhantomConfig,
    stream: np.random.SeedSequence,
    pairs: bool = False,
) -> RunResult:
    """Simulates both planes of one biplane run (with no-contrast twins when `pairs`).

    The bolus timing and each plane's noise draw from separate child streams of `stream`, so
    the phase truth of a run does not depend on the image size or on the other runs.
    """
    timing_seq, *plane_seqs = stream.spawn(1 + len(run.planes))
    rng = np.random.default_rng(timing_seq)
    arteries = trees.arteries(run.injection, run.side)
    veins = trees.veins()
    dt = run.frame_time_ms / 1000.0
    times = np.arange(run.n_frames) * dt
    t_inject = (run.n_mask - 1) * dt + rng.uniform(0.3, 0.9) * dt
    bolus = Bolus.sample(rng, t_inject)
    c_art = bolus.arterial(times, arteries.path_mm)  # (F, N_a)
    c_cap = bolus.capillary(times, arteries.path_mm)  # (F,)
    c_ven = bolus.venous(times, arteries.path_mm, veins.path_mm) * VENOUS_PEAK  # (F, N_v)
    opacity, phases = _phase_truth(times, bolus, arteries, veins)
    contrast = Contrast(arteries, veins, c_art, c_cap, c_ven)
    planes = [
        _render_plane(geom, contrast, head, detector, config, np.random.default_rng(seq), pairs)
        for geom, seq in zip(run.planes, plane_seqs, strict=True)
    ]
    return RunResult(plan=run, planes=planes, times_s=times, phases=phases, opacity=opacity)


def _phase_truth(times, bolus, arteries, veins) -> tuple[np.ndarray, list[str]]:
    """Per-frame compartment opacities (F, 3) and phase labels (see bolus.classify_phase).

    Each compartment's mean concentration is normalised by its own peak over a long, dense time
    grid, so 1 means "as filled as it will get" even when the series ends before the peak.
    """
    distal = arteries.path_mm[arteries.segment_class == SegmentClass.PERIPHERAL]
    distal = _subsample(distal if distal.size else arteries.path_mm)
    venous = _subsample(veins.path_mm)
    dense = np.arange(0.0, 30.0, 0.05)

    def curves(t: np.ndarray) -> np.ndarray:
        a = bolus.arterial(t, distal).mean(axis=1)
        v = bolus.venous(t, arteries.path_mm, venous, venous_max=veins.path_mm.max()).mean(axis=1)
        return np.stack([a, bolus.capillary(t, arteries.path_mm), v], axis=1)

    reference = curves(dense)
    opacity = curves(times) / reference.max(axis=0)
    arterial_peak_s = dense[reference[:, 0].argmax()]
    phases = [
        classify_phase(t, bolus.t_inject, *opacity[i], rising=bool(t < arterial_peak_s))
        for i, t in enumerate(times)
    ]
    return opacity, phases


def _subsample(values: np.ndarray, n: int = 400) -> np.ndarray:
    """At most n evenly spaced quantiles of values (enough for compartment means)."""
    return np.quantile(values, np.linspace(0, 1, n)) if values.size > n else values


def _render_plane(geom, contrast, head, detector, config, rng, pairs=False) -> PlaneResult:
    """Native frames and label maps of one plane of a run (and the frames' twins when `pairs`)."""
    arteries, veins = contrast.arteries, contrast.veins
    c_art, c_cap, c_ven = contrast.arterial, contrast.capillary, contrast.venous
    view = view_for_angles(geom.primary, geom.secondary)
    size = detector.size
    art = project_tree(arteries, detector, view)
    ven = project_tree(veins, detector, view)
    peripheral = (arteries.segment_class == SegmentClass.PERIPHERAL).astype(float)
    blush = gaussian_blur(art.integrate(peripheral), 4.0 / detector.spacing_mm)
    blush = (BLUSH_PEAK * blush / (np.percentile(blush, 99.5) + 1e-9)).astype(np.float32)
    artery_label = _static_labels(art, arteries)
    bone = ellipsoid_chords(head, detector, view) * MU_BONE_PER_MM
    bone *= 1.0 + 0.04 * smooth_noise(rng, size, 12.0 / detector.spacing_mm)
    bone = _equalise(bone, detector)
    shutter, collimator = _collimator(rng, size)
    # Exposure through the head and its first-order change under a sub-pixel shift (motion).
    head_exposure = (config.photons_per_pixel * collimator * np.exp(-bone)).astype(np.float32)
    grad_rows, grad_cols = (-head_exposure * g for g in np.gradient(bone.astype(np.float32)))
    counts_head = config.photons_per_pixel * np.exp(-np.median(bone[bone > 0.5]))
    gain = np.float32(STORED_AT_HEAD * (2**config.bits_stored - 1) / counts_head)
    blur_px = config.detector_blur_mm / detector.spacing_mm
    motion = np.cumsum(rng.normal(0, config.motion_px_per_frame, size=(len(c_art), 2)), axis=0)
    motion = (motion - motion[0]).astype(np.float32)
    frames = np.empty((len(c_art), size, size), dtype=np.uint16)
    labels = np.empty((len(c_art), size, size), dtype=np.uint8)
    twins = np.empty_like(frames) if pairs else None
    top = 2**config.bits_stored - 1
    for i in range(len(c_art)):
        arterial = art.integrate(MU_IODINE_PER_MM * c_art[i]).astype(np.float32)
        venous = ven.integrate(MU_IODINE_PER_MM * c_ven[i]).astype(np.float32)
        still = head_exposure - motion[i, 0] * grad_rows - motion[i, 1] * grad_cols
        exposure = still * np.exp(-(arterial + venous + np.float32(c_cap[i]) * blush))
        noise = rng.standard_normal(exposure.shape, dtype=np.float32)
        frames[i] = _detect(exposure, noise, blur_px, gain, top)
        if twins is not None:
            twins[i] = _detect(still, noise, blur_px, gain, top)
        labels[i] = artery_label * (arterial > MASK_THRESHOLD)
        labels[i][(labels[i] == 0) & (venous > MASK_THRESHOLD)] = SegmentClass.VENOUS
    return PlaneResult(frames=frames, labels=labels, shutter=shutter, noncontrast=twins)


def _detect(
    exposure: np.ndarray, noise: np.ndarray, blur_px: float, gain: np.float32, top: int
) -> np.ndarray:
    """Stored values of one frame: quantum noise, detector blur, gain, rounding to [0, top].

    Args:
        exposure: (H, W) float32 expected counts.
        noise: (H, W) float32 standard-normal draw, scaled here by sqrt(exposure) (Gaussian
            approximation of Poisson noise); not modified.
        blur_px: standard deviation of the detector blur in pixels.
        gain: stored value per count.
        top: largest stored value.

    Returns:
        (H, W) float32 integral values in [0, top].
    """
    noisy = exposure + noise * np.sqrt(np.maximum(exposure, 0))
    return np.clip(np.rint(gaussian_blur(noisy, blur_px, truncate=2.5) * gain), 0, top)


def _equalise(attenuation: np.ndarray, detector: Detector) -> np.ndarray:
    """Adds a smooth semi-transparent equalisation filter where the body is thin.

    Angiography systems place wedge filters over air and thin anatomy (neck, face) so the
    detector does not saturate there; here the filter tops the attenuation up to
    EQUALISE_FLOOR times the median head attenuation, smoothed over 10 mm. Log subtraction removes
    it, like any static attenuation.
    """
    floor = EQUALISE_FLOOR * float(np.median(attenuation[attenuation > 0.5]))
    smooth = gaussian_blur(attenuation, 10.0 / detector.spacing_mm)
    return attenuation + gaussian_blur(np.maximum(floor - smooth, 0), 5.0 / detector.spacing_mm)


def _static_labels(projection, tree: VesselTree) -> np.ndarray:
    """(H, W) arterial class with the longest chord at each pixel (0 where no artery projects)."""
    per_class = np.stack(
        [projection.integrate((tree.segment_class == c).astype(float)) for c in SegmentClass]
    )
    return np.where(per_class.max(axis=0) > 0, per_class.argmax(axis=0) + 1, 0).astype(np.uint8)


def _collimator(
    rng: np.random.Generator, size: int
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Random rectangular collimation: 1-based (left, right, upper, lower) edges, transmission."""
    m = rng.integers(size // 40, size // 9, size=4)
    left, right, upper, lower = int(m[0]) + 1, size - int(m[1]), int(m[2]) + 1, size - int(m[3])
    transmission = np.full((size, size), 0.03)
    transmission[upper - 1 : lower, left - 1 : right] = 1.0
    return (left, right, upper, lower), transmission
