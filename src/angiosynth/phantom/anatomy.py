"""Anatomy templates: head (skull, soft tissue) and cerebral vessel trees per patient.

All template coordinates are millimetres in a canonical adult head (LPS, origin near the centre of
the cranium) and are scaled per patient. `s` is the side: +1 left, -1 right.

Arterial templates (SPEC.md "Phantom"):
- anterior circulation (AC): internal carotid artery (cervical, petrous, cavernous siphon,
  supraclinoid) -> ophthalmic, posterior communicating, then the terminal bifurcation into the
  middle cerebral artery (M1 lateral, then superior/inferior divisions fanning over the insula and
  convexity) and the anterior cerebral artery (A1 medial, A2 along the callosal arc: pericallosal
  and callosomarginal branches over the medial surface);
- posterior circulation (PC): the injected (dominant) vertebral artery with its V3 loop, reflux
  into the contralateral V4, PICA, the basilar artery along the clivus with AICA and SCA, and both
  posterior cerebral arteries running backwards around the midbrain to the occipital lobes;
- external carotid (ECA; excluded by curation): facial, superficial temporal, occipital and middle
  meningeal branches outside the brain;
- venous: jugular -> sigmoid -> transverse sinuses -> torcula -> superior sagittal sinus and
  straight sinus, with cortical veins draining into the superior sagittal sinus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from angiosynth.phantom.vessels import (
    Domain,
    GrowthParams,
    SegmentClass,
    TreeBuilder,
    VesselTree,
)

#: Cranial cavity in the canonical head (centre, semi-axes); vessels grow inside it.
CRANIUM_CENTRE = np.array([0.0, 5.0, 10.0])
CRANIUM_AXES = np.array([66.0, 86.0, 70.0])
#: Skull bone thickness (mm) around the cranial cavity.
SKULL_THICKNESS_MM = 6.5


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid of constant attenuation.

    Attributes:
        centre: (3,) centre.
        axes: (3,) semi-axes along the rotated frame.
        rotation: (3, 3) columns are the ellipsoid's axes in patient space.
        density: attenuation relative to bone (bone = 1, negative removes material).
    """

    centre: np.ndarray
    axes: np.ndarray
    rotation: np.ndarray
    density: float


def _rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _rot_x(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[1.0, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@dataclass(frozen=True)
class Patient:
    """Per-patient anatomical variation.

    Attributes:
        scale: overall head size factor.
        dominant_va: side (+1 left / -1 right) of the dominant vertebral artery (PC injections).
        tortuosity: random turning of grown branches (higher in older patients).
        a1_hypoplastic: (left, right) hypoplastic A1 segments.
        pcomm_present: (left, right) posterior communicating arteries.
        pica_present, aica_present: presence of the cerebellar arteries (left, right).
        contralateral_va_hypoplastic: the non-injected vertebral artery is thin.
    """

    scale: float
    dominant_va: int
    tortuosity: float
    a1_hypoplastic: tuple[bool, bool]
    pcomm_present: tuple[bool, bool]
    pica_present: tuple[bool, bool]
    aica_present: tuple[bool, bool]
    contralateral_va_hypoplastic: bool

    @staticmethod
    def sample(rng: np.random.Generator) -> Patient:
        """Draws a patient's anatomical variation."""
        pair = lambda p: (bool(rng.random() < p), bool(rng.random() < p))  # noqa: E731
        return Patient(
            scale=float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12)),
            dominant_va=int(rng.choice([-1, 1], p=[0.4, 0.6])),
            tortuosity=float(rng.uniform(0.08, 0.2)),
            a1_hypoplastic=pair(0.08),
            pcomm_present=pair(0.6),
            pica_present=pair(0.85),
            aica_present=pair(0.75),
            contralateral_va_hypoplastic=bool(rng.random() < 0.25),
        )

    def side_index(self, side: int) -> int:
        """Index into the (left, right) tuples for side +1 / -1."""
        return 0 if side > 0 else 1


def cranial_domain(patient: Patient, half_spaces: list[tuple[tuple, float]] = ()) -> Domain:
    """The cranial cavity of a patient, optionally cut by half-spaces n.x >= c (canonical mm)."""
    return Domain(
        centre=CRANIUM_CENTRE * patient.scale,
        semi_axes=CRANIUM_AXES * patient.scale,
        half_spaces=[(np.asarray(n, float), c * patient.scale) for n, c in half_spaces],
    )


def head_ellipsoids(patient: Patient) -> list[Ellipsoid]:
    """Bone and soft-tissue bodies of the head, densities relative to bone.

    Soft tissue is expressed as a fraction of bone attenuation (~0.45); cavities use negative
    densities inside a positive body.
    """
    s, eye = patient.scale, np.eye(3)
    outer = CRANIUM_AXES + SKULL_THICKNESS_MM
    e = lambda c, a, d, r=eye: Ellipsoid(np.array(c, float) * s, np.array(a, float) * s, r, d)  # noqa: E731
    soft = 0.3
    bodies = [
        e(CRANIUM_CENTRE, outer + 5.0, soft),  # scalp and brain as soft tissue
        e(CRANIUM_CENTRE, outer, 1.0 - soft),  # skull shell = outer minus inner
        e(CRANIUM_CENTRE, CRANIUM_AXES, -(1.0 - soft)),
        e((0, 18, -95), (34, 38, 70), soft),  # neck
        e((0, -42, -62), (50, 40, 38), soft),  # face
        e((0, -52, -45), (42, 18, 30), 0.35),  # facial bones
        e((0, -30, -80), (48, 40, 16), 0.5),  # mandible body
        e((0, -30, -80), (43, 35, 12), -0.5),
        e((0, 2, -52), (55, 62, 5), 0.3),  # skull base
        e((0, 6, -36), (7, 7, 18), 0.8, _rot_x(-30)),  # clivus
        e((0, -14, -30), (6, 5, 4), -0.5),  # sella (air/soft)
    ]
    for side in (1, -1):
        bodies.append(e((side * 32, 8, -40), (26, 8, 8), 0.9, _rot_z(side * 40)))  # petrous
        bodies.append(e((side * 32, -62, -18), (16, 14, 15), -0.3))  # orbit
        bodies.append(e((side * 28, -55, -52), (17, 15, 14), -0.3))  # maxillary sinus
    for k, (width, height) in enumerate([(38, 7), (14, 9), (14, 9), (14, 9)]):
        bodies.append(e((0, 18, -70 - 18 * k), (width, 12, height), 0.75))  # C1-C4
    return bodies


def _c(points: list[tuple[float, float, float]], s: int, scale: float) -> np.ndarray:
    """Mirrors canonical left-side control points to side s and scales them."""
    arr = np.asarray(points, dtype=float)
    arr[:, 0] *= s
    return arr * scale


def grow_anterior(side: int, patient: Patient, rng: np.random.Generator) -> VesselTree:
    """Internal carotid artery tree of one side (AC injection)."""
    b, k = TreeBuilder(), patient.scale
    params = GrowthParams(tortuosity=patient.tortuosity)
    si = patient.side_index(side)
    jitter = lambda pts: pts + rng.normal(scale=1.2, size=pts.shape) * k  # noqa: E731
    ica = b.add_trunk(
        jitter(_c([(22, 8, -100), (21, 10, -70), (20, 9, -46), (18, -2, -38),
                   (15, -10, -30), (15, -22, -28), (15, -28, -20), (14, -24, -12),
                   (13, -16, -8)], side, k)),
        radii=(2.4, 1.9),
    )  # fmt: skip
    terminus = ica[-1]
    ophthalmic_at = ica[int(len(ica) * 0.78)]
    r = b.side_branch_radius(ophthalmic_at, 0.3)
    b.add_trunk(_c([(15, -27, -17), (20, -45, -16), (26, -62, -18)], side, k), (r, r * 0.7),
                parent=ophthalmic_at)  # fmt: skip
    if patient.pcomm_present[si]:
        pcomm_at = ica[int(len(ica) * 0.93)]
        r = b.side_branch_radius(pcomm_at, 0.35)
        b.add_trunk(_c([(12, -12, -9), (10, 0, -11), (9, 10, -11)], side, k), (r, r),
                    parent=pcomm_at)  # fmt: skip

    ratio = 0.45 if patient.a1_hypoplastic[si] else 0.8
    r_m1, r_a1 = _split_radius(b.radius(terminus), ratio)
    m1_path = _c([(13, -16, -8), (26, -16, -6), (38, -13, -3), (44, -9, 3)], side, k)
    m1 = b.add_trunk(jitter(m1_path),
                     (r_m1, r_m1 * 0.95), parent=terminus)  # fmt: skip
    a1 = b.add_trunk(_c([(13, -16, -8), (6, -22, -4), (2, -26, 0)], side, k),
                     (r_a1, r_a1 * 0.95), parent=terminus)  # fmt: skip
    _grow_mca(b, m1[-1], side, patient, params, rng)
    _grow_aca(b, a1[-1], side, patient, params, rng)
    return b.build()


def _split_radius(r0: float, ratio: float) -> tuple[float, float]:
    """Murray split used at template bifurcations (children r1 >= r2)."""
    r1 = r0 / (1.0 + ratio**3) ** (1.0 / 3.0)
    return r1, ratio * r1


def _grow_mca(b, genu, side, patient, params, rng) -> None:
    """Superior and inferior MCA divisions, fanning over the insula to the convexity."""
    k = patient.scale
    domain = cranial_domain(patient, [((side, 0, 0), 14.0)])
    r_sup, r_inf = _split_radius(b.radius(genu), rng.uniform(0.75, 1.0))
    divisions = [
        (r_sup, (0.15, -0.1, 1.0), [(48, -58, 22), (58, -35, 48), (62, -5, 62), (58, 28, 60)]),
        (r_inf, (0.2, 0.3, 0.6), [(52, -22, -28), (63, 5, -18), (63, 35, 2), (55, 62, 28)]),
    ]
    for radius, direction, targets in divisions:
        start = b.add_node(b.point(genu) + np.array(direction) * np.array([side, 1, 1]) * 2.0,
                           radius, genu)  # fmt: skip
        sub = _fan(radius, len(targets), rng)
        node = start
        for r_branch, tgt in zip(sub, targets, strict=True):
            tgt = _c([tgt], side, k)[0] + rng.normal(scale=5.0, size=3)
            d = np.array(direction) * np.array([side, 1, 1])
            b.grow(node, d, r_branch, tgt, domain, params, rng)


def _fan(radius: float, n: int, rng: np.random.Generator) -> list[float]:
    """Radii of n branches sharing one stem with sum r^3 = radius^3 (random shares)."""
    shares = rng.dirichlet(np.full(n, 4.0))
    return list(radius * shares ** (1.0 / 3.0))


def _grow_aca(b, a1_end, side, patient, params, rng) -> None:
    """A2 along the callosal arc with pericallosal and callosomarginal branches."""
    k = patient.scale
    domain = cranial_domain(patient, [((side, 0, 0), 1.0), ((-side, 0, 0), -26.0)])
    r = b.radius(a1_end)
    arc = b.add_trunk(
        _c([(2, -26, 0), (3, -33, 12), (3, -34, 26), (3, -22, 38), (3, 2, 43), (3, 28, 38),
            (3, 44, 26)], side, k) + rng.normal(scale=1.0, size=(7, 3)) * k,
        (r, r * 0.8),
        parent=a1_end,
    )  # fmt: skip
    targets = [(8, -45, 45), (8, -20, 66), (8, 10, 72), (8, 35, 60), (8, 58, 40)]
    for frac, tgt in zip(np.linspace(0.25, 0.85, len(targets)), targets, strict=True):
        at = arc[int(frac * (len(arc) - 1))]
        if b.n_children(at) != 1:
            continue
        r_side = b.side_branch_radius(at, rng.uniform(0.5, 0.85))
        tgt = _c([tgt], side, k)[0] + rng.normal(scale=4.0, size=3)
        b.grow(at, np.array([0, -0.2, 1.0]), r_side, tgt, domain, params, rng)
    b.grow(arc[-1], np.array([0, 0.6, -0.6]), b.radius(arc[-1]), _c([(6, 70, 15)], side, k)[0],
           domain, params, rng)  # fmt: skip


#: Posterior cerebral artery from the basilar tip around the midbrain (canonical left side).
PCA_PATH = [(0, -4, -10), (8, -3, -9), (17, 8, -8), (22, 28, -3), (19, 48, 4)]


def grow_posterior(patient: Patient, rng: np.random.Generator) -> VesselTree:
    """Vertebrobasilar tree injected through the dominant vertebral artery (PC injection)."""
    b, k, s = TreeBuilder(), patient.scale, patient.dominant_va
    params = GrowthParams(tortuosity=patient.tortuosity)
    jitter = lambda pts: pts + rng.normal(scale=1.2, size=pts.shape) * k  # noqa: E731
    va = b.add_trunk(
        jitter(_c([(24, 12, -115), (24, 14, -78), (30, 22, -66), (27, 31, -58), (15, 27, -52),
                   (7, 14, -47), (1, 7, -42)], s, k)),
        radii=(1.9, 1.7),
    )  # fmt: skip
    vb = va[-1]
    infratentorial = [((0, 1, 0), -2.0), ((0, 0, -1), 14.0)]
    domain_cb = cranial_domain(patient, infratentorial)
    if patient.pica_present[patient.side_index(s)]:
        at = va[int(len(va) * 0.8)]
        r = b.side_branch_radius(at, 0.4)
        b.grow(at, np.array([0.3 * s, 0.5, -0.6]), r, _c([(22, 62, -52)], s, k)[0], domain_cb,
               params, rng)  # fmt: skip
    basilar = b.add_trunk(jitter(_c([(0, 5, -38), (0, 1, -26), (0, -2, -16), (0, -4, -10)], s, k)),
                          (1.65, 1.45), parent=vb)  # fmt: skip
    # Contralateral V4 fills by reflux from the vertebrobasilar junction.
    r = b.side_branch_radius(vb, 0.45 if patient.contralateral_va_hypoplastic else 0.75)
    b.add_trunk(_c([(1, 7, -42), (-7, 14, -47), (-15, 26, -52)], s, k), (r, r), parent=vb)
    for side in (1, -1):
        si = patient.side_index(side)
        if patient.aica_present[si]:
            at = basilar[int(len(basilar) * 0.25) + (side > 0)]
            r = b.side_branch_radius(at, 0.35)
            b.grow(at, np.array([side, 0.2, -0.2]), r, _c([(40, 38, -46)], side, k)[0], domain_cb,
                   params, rng)  # fmt: skip
        at = basilar[-3 - (side > 0)]
        r = b.side_branch_radius(at, 0.5)
        sca = b.add_trunk(_c([(3, -1, -13), (12, 4, -16), (18, 18, -18)], side, k), (r, r * 0.9),
                          parent=at)  # fmt: skip
        b.grow(sca[-1], np.array([0.2 * side, 1, -0.3]), b.radius(sca[-1]),
               _c([(22, 55, -34)], side, k)[0], domain_cb, params, rng)  # fmt: skip
    tip = basilar[-1]
    r_l, r_r = _split_radius(b.radius(tip), rng.uniform(0.85, 1.0))
    for side, r_pca in ((1, r_l), (-1, r_r)):
        pca = b.add_trunk(
            jitter(_c(PCA_PATH, side, k)),
            (r_pca, r_pca * 0.85),
            parent=tip,
        )  # fmt: skip
        domain = cranial_domain(patient, [((side, 0, 0), 0.5), ((0, 1, 0), -25.0)])
        temporal_at = pca[int(len(pca) * 0.45)]
        r = b.side_branch_radius(temporal_at, 0.6)
        b.grow(temporal_at, np.array([side, 0.1, -0.5]), r, _c([(45, 15, -22)], side, k)[0], domain,
               params, rng)  # fmt: skip
        r_calc, r_po = _split_radius(b.radius(pca[-1]), rng.uniform(0.7, 1.0))
        b.grow(pca[-1], np.array([0, 1, 0.1]), r_calc, _c([(10, 84, 8)], side, k)[0], domain,
               params, rng)  # fmt: skip
        b.grow(pca[-1], np.array([0, 0.6, 0.8]), r_po, _c([(12, 62, 48)], side, k)[0], domain,
               params, rng)  # fmt: skip
    return b.build()


def grow_external(side: int, patient: Patient, rng: np.random.Generator) -> VesselTree:
    """External carotid artery tree of one side (scalp and face, outside the cranial cavity)."""
    b, k = TreeBuilder(), patient.scale
    params = GrowthParams(tortuosity=patient.tortuosity * 1.3, min_radius_mm=0.3)
    scalp = Domain(  # between the skull and the skin, on the injected side
        centre=CRANIUM_CENTRE * k,
        semi_axes=(CRANIUM_AXES + SKULL_THICKNESS_MM + 9.0) * k,
        half_spaces=[(np.array([side, 0.0, 0.0]), 5.0 * k)],
        hollow_axes=(CRANIUM_AXES + 2.0) * k,
    )
    eca = b.add_trunk(_c([(20, 2, -100), (27, -6, -82), (32, -4, -62)], side, k), (1.9, 1.6))
    branches = [
        (0.25, (0.3, -1, 0.1), (45, -75, -65)),  # facial
        (0.5, (0.4, 0.6, 0.2), (45, 95, -20)),  # occipital
        (0.75, (0.6, 0.1, 0.8), (60, 0, -25)),  # middle meningeal
    ]
    for frac, direction, tgt in branches:
        at = eca[int(frac * (len(eca) - 1))]
        r = b.side_branch_radius(at, 0.6)
        b.grow(at, np.array(direction) * [side, 1, 1], r, _c([tgt], side, k)[0], scalp, params, rng)
    temporal = _c([(74, -10, 50)], side, k)[0]  # superficial temporal artery
    b.grow(eca[-1], np.array([0.3 * side, 0, 1]), b.radius(eca[-1]), temporal,
           scalp, params, rng)  # fmt: skip
    return b.build()


def grow_common_carotid_stem(side: int, patient: Patient) -> VesselTree:
    """Common carotid artery up to its bifurcation (the ICA and ECA trees start there)."""
    b = TreeBuilder()
    b.add_trunk(
        _c([(26, 14, -160), (24, 10, -130), (21, 5, -101)], side, patient.scale), (3.2, 3.0)
    )
    return b.build()


def grow_veins(patient: Patient, rng: np.random.Generator) -> VesselTree:
    """Dural sinuses and cortical veins; path lengths run from the jugular outflow upstream."""
    b, k = TreeBuilder(), patient.scale
    venous = lambda r: SegmentClass.VENOUS  # noqa: E731
    params = GrowthParams(tortuosity=0.1, min_radius_mm=0.5, length_per_radius=(12, 28))
    domain = cranial_domain(patient)
    torcula = -1
    for side in (-1, 1):  # the right transverse sinus is usually dominant and carries the SSS
        r0 = 4.0 if side < 0 else 3.0
        sinus = b.add_trunk(
            _c([(40, 20, -115), (44, 22, -62), (54, 32, -44), (60, 55, -24), (40, 82, -12),
                (2, 88, -8)], side, k),
            (r0, r0 * 0.85), cls=SegmentClass.VENOUS,
        )  # fmt: skip
        if side < 0:
            torcula = sinus[-1]
    sss = b.add_trunk(
        _c([(0, 88, -8), (0, 84, 30), (0, 55, 65), (0, 12, 80), (0, -30, 74), (0, -62, 52),
            (0, -74, 28)], 1, k) + rng.normal(scale=0.8, size=(7, 3)),
        (3.0, 1.4), parent=torcula, cls=SegmentClass.VENOUS,
    )  # fmt: skip
    straight_at = torcula
    r = b.side_branch_radius(straight_at, 0.6)
    b.add_trunk(_c([(0, 86, -6), (0, 55, 6), (0, 25, 14), (3, 0, 16), (3, -22, 12)], 1, k),
                (r, r * 0.6), parent=straight_at, cls=SegmentClass.VENOUS)  # fmt: skip
    for frac in np.linspace(0.15, 0.9, 8):
        for side in (1, -1):
            at = sss[int(frac * (len(sss) - 1)) + (side > 0)]
            if b.n_children(at) != 1:
                continue
            r = b.side_branch_radius(at, rng.uniform(0.35, 0.55))
            p = b.point(at)
            tgt = np.array([side * 62 * k, p[1] + rng.normal(scale=15), -5 * k])
            b.grow(at, np.array([side, 0, -0.3]), r, tgt, domain, params, rng, cls=venous)
    return b.build()
