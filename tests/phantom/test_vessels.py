"""Invariants of the vessel trees: Murray's law, tapering, containment, path lengths."""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from angiosynth.phantom import anatomy
from angiosynth.phantom.anatomy import CRANIUM_AXES, CRANIUM_CENTRE, Patient
from angiosynth.phantom.vessels import (
    Domain,
    SegmentClass,
    TreeBuilder,
    VesselTree,
    arterial_class,
    murray_angles,
    murray_children,
)

SEEDS = (0, 1, 2)


def _grow(kind: str, seed: int) -> VesselTree:
    """Grows one tree of a seeded patient (the same seed gives the same patient and tree)."""
    rng = np.random.default_rng(seed)
    patient = Patient.sample(rng)
    side = 1 if seed % 2 == 0 else -1
    if kind == "AC":
        return anatomy.grow_anterior(side, patient, rng)
    if kind == "PC":
        return anatomy.grow_posterior(patient, rng)
    if kind == "ECA":
        return anatomy.grow_external(side, patient, rng)
    return anatomy.grow_veins(patient, rng)


@dataclass(frozen=True)
class GrownTree:
    """A tree, its patient, and the node ranges [start, stop) added by each TreeBuilder.grow."""

    kind: str
    seed: int
    patient: Patient
    tree: VesselTree
    grown: list[tuple[int, int, Domain]]


@pytest.fixture(scope="module")
def trees() -> dict[tuple[str, int], GrownTree]:
    """AC, PC, ECA and venous trees of three patients, recording which nodes `grow` added."""
    log: list[tuple[int, int, Domain]] = []
    original = TreeBuilder.grow
    signature = inspect.signature(original)

    def recording_grow(self, *args, **kwargs):
        domain = signature.bind(self, *args, **kwargs).arguments["domain"]
        first = len(self)
        original(self, *args, **kwargs)
        log.append((first, len(self), domain))

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TreeBuilder, "grow", recording_grow)
        for seed in SEEDS:
            patient = Patient.sample(np.random.default_rng(seed))
            for kind in ("AC", "PC", "ECA", "veins"):
                log.clear()
                tree = _grow(kind, seed)
                out[kind, seed] = GrownTree(kind, seed, patient, tree, list(log))
    return out


ARTERIAL = [(kind, seed) for kind in ("AC", "PC", "ECA") for seed in SEEDS]
ALL = [*ARTERIAL, *(("veins", seed) for seed in SEEDS)]


def _depths(tree: VesselTree) -> np.ndarray:
    """Number of bifurcations (nodes with >= 2 children) above each node."""
    kids = tree.children()
    depth = np.zeros(len(tree.parent), dtype=int)
    for node, par in enumerate(tree.parent):
        if par >= 0:
            depth[node] = depth[par] + (len(kids[par]) >= 2)
    return depth


def test_murray_children_obey_cube_law() -> None:
    for r0, ratio in [(2.0, 1.0), (1.3, 0.35), (0.5, 0.8)]:
        r1, r2 = murray_children(r0, ratio)
        assert r1**3 + r2**3 == pytest.approx(r0**3, rel=1e-12)
        assert r2 == pytest.approx(ratio * r1)
        assert r2 <= r1 < r0


def test_murray_angles_equal_children_share_the_classic_angle() -> None:
    r1, r2 = murray_children(1.0, 1.0)

    th1, th2 = murray_angles(1.0, r1, r2)

    assert th1 == pytest.approx(th2, abs=1e-12)
    # Murray's symmetric optimum: cos(theta) = 2^(-1/3), about 37.5 degrees.
    assert np.degrees(th1) == pytest.approx(np.degrees(np.arccos(2 ** (-1 / 3))), abs=1e-9)
    assert 37.0 < np.degrees(th1) < 38.0


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.8, 0.95])
def test_murray_angles_thinner_child_branches_wider(ratio: float) -> None:
    r1, r2 = murray_children(1.6, ratio)

    th_thick, th_thin = murray_angles(1.6, r1, r2)

    assert th_thin > th_thick > 0


def test_murray_angles_tiny_side_branch_is_perpendicular() -> None:
    r1, r2 = murray_children(1.0, 0.01)

    th_main, th_side = murray_angles(1.0, r1, r2)

    assert np.degrees(th_main) < 1.0
    assert np.degrees(th_side) == pytest.approx(90.0, abs=1.0)


@pytest.mark.parametrize(("kind", "seed"), ALL)
def test_bifurcations_obey_murrays_law(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree
    kids = tree.children()
    branching = [n for n, k in enumerate(kids) if len(k) >= 2]

    assert any(len(kids[n]) == 2 for n in branching)  # the check below is not vacuous
    for node in branching:
        parent_cube = tree.radius[node] ** 3
        children_cube = float(np.sum(tree.radius[kids[node]] ** 3))
        assert children_cube == pytest.approx(parent_cube, rel=1e-6), (node, len(kids[node]))


@pytest.mark.parametrize(("kind", "seed"), ALL)
def test_radius_never_increases_downstream(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree
    child = tree.segment_nodes

    assert np.all(tree.radius[child] <= tree.radius[tree.parent[child]] * (1 + 1e-9))
    assert np.all(tree.radius > 0)


@pytest.mark.parametrize(("kind", "seed"), ARTERIAL)
def test_arterial_tree_has_one_root_and_thinner_leaves(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree
    kids = tree.children()
    roots = np.flatnonzero(tree.parent < 0)
    leaves = np.array([n for n, k in enumerate(kids) if not k])

    assert len(roots) == 1
    assert np.all(tree.radius[leaves] <= tree.radius[roots[0]])
    # Growth stops near min_radius_mm (0.22 for AC/PC, 0.3 for ECA): most tips are peripheral.
    assert np.median(tree.radius[leaves]) < 0.45


@pytest.mark.parametrize(("kind", "seed"), ARTERIAL)
def test_mean_radius_decreases_with_bifurcation_depth(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree
    depth = _depths(tree)
    bins = [(0, 0), (1, 3), (4, 7), (8, depth.max())]

    means = [tree.radius[(depth >= lo) & (depth <= hi)].mean() for lo, hi in bins]

    assert depth.max() >= 8
    assert all(a > b for a, b in itertools.pairwise(means)), means


@pytest.mark.parametrize(("kind", "seed"), ALL)
def test_flat_representation_is_consistent(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree
    n = len(tree.parent)
    child = tree.segment_nodes

    assert tree.points.shape == (n, 3)
    assert tree.radius.shape == tree.path_mm.shape == tree.segment_class.shape == (n,)
    assert np.all(np.isfinite(tree.points))
    assert np.all(tree.parent[child] < child)  # parents come first (topological order)
    assert sum(len(k) for k in tree.children()) == len(child)


@pytest.mark.parametrize(("kind", "seed"), ALL)
def test_path_length_grows_by_segment_length(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree
    child = tree.segment_nodes
    par = tree.parent[child]
    seg = np.linalg.norm(tree.points[child] - tree.points[par], axis=1)

    assert np.all(tree.path_mm[tree.parent < 0] == 0)
    assert np.all(seg > 0)
    assert np.all(tree.path_mm[child] > tree.path_mm[par])
    np.testing.assert_allclose(tree.path_mm[child], tree.path_mm[par] + seg, rtol=1e-9)


@pytest.mark.parametrize(("kind", "seed"), ARTERIAL)
def test_arterial_classes_follow_radius(trees, kind: str, seed: int) -> None:
    tree = trees[kind, seed].tree

    expected = [arterial_class(r) for r in tree.radius]

    np.testing.assert_array_equal(tree.segment_class, expected)
    assert set(np.unique(tree.segment_class)) == {
        SegmentClass.PROXIMAL,
        SegmentClass.MEDIUM,
        SegmentClass.PERIPHERAL,
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_veins_are_all_venous(trees, seed: int) -> None:
    assert np.all(trees["veins", seed].tree.segment_class == SegmentClass.VENOUS)


@pytest.mark.parametrize(("kind", "seed"), [(k, s) for k, s in ALL if k != "ECA"])
def test_grown_intracranial_nodes_lie_inside_the_cranium(trees, kind: str, seed: int) -> None:
    grown = trees[kind, seed]
    k = grown.patient.scale
    nodes = np.concatenate([np.arange(a, b) for a, b, _ in grown.grown])
    q = (grown.tree.points[nodes] - CRANIUM_CENTRE * k) / (CRANIUM_AXES * k)

    assert len(nodes) > 0.5 * len(grown.tree.parent)  # most of the tree is grown
    assert np.sqrt((q**2).sum(axis=1)).max() <= 1.0


@pytest.mark.parametrize(("kind", "seed"), ALL)
def test_grown_nodes_stay_in_their_growth_domain(trees, kind: str, seed: int) -> None:
    grown = trees[kind, seed]

    assert grown.grown
    for first, stop, domain in grown.grown:
        points = grown.tree.points[first:stop]
        q = (points - domain.centre) / domain.semi_axes
        assert np.sqrt((q**2).sum(axis=1)).max() <= 0.98 + 1e-9
        # Half-spaces keep branches in their hemisphere / compartment (within 1 mm).
        for normal, offset in domain.half_spaces:
            assert (points @ normal - offset).min() > -1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_external_carotid_stays_out_of_the_brain(trees, seed: int) -> None:
    """ECA branches (scalp, face, dura) do not run deep inside the cranial cavity."""
    grown = trees["ECA", seed]
    k = grown.patient.scale
    nodes = np.concatenate([np.arange(a, b) for a, b, _ in grown.grown])
    q = (grown.tree.points[nodes] - CRANIUM_CENTRE * k) / (CRANIUM_AXES * k)
    depth = np.sqrt((q**2).sum(axis=1))

    # The middle meningeal artery runs on the dura, just inside the inner table (q close to 1).
    assert np.mean(depth < 0.85) < 0.1


@pytest.mark.parametrize("kind", ["AC", "PC", "ECA", "veins"])
def test_same_seed_gives_identical_tree(trees, kind: str) -> None:
    again = _grow(kind, 0)
    first, other = trees[kind, 0].tree, trees[kind, 1].tree

    for field in ("points", "radius", "parent", "path_mm", "segment_class"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    assert first.points.shape != other.points.shape or not np.allclose(first.points, other.points)


def test_left_and_right_anterior_trees_sit_on_their_side(trees) -> None:
    left = trees["AC", 0].tree  # even seeds grow the left side (see _grow)
    right = trees["AC", 1].tree

    # LPS: +x is the patient's left. The ACA runs near the midline, the MCA far lateral.
    assert np.median(left.points[:, 0]) > 15
    assert np.median(right.points[:, 0]) < -15


def test_concatenate_reindexes_parents_and_offsets_paths() -> None:
    def chain(x0: float, n: int) -> VesselTree:
        b = TreeBuilder()
        prev = -1
        for i in range(n):
            prev = b.add_node(np.array([x0 + i, 0.0, 0.0]), 1.0 - 0.1 * i, prev)
        return b.build()

    a, b = chain(0.0, 3), chain(10.0, 4)

    joined = VesselTree.concatenate([a, b], [0.0, 5.0])

    np.testing.assert_array_equal(joined.parent, [-1, 0, 1, -1, 3, 4, 5])
    np.testing.assert_allclose(joined.path_mm, [0, 1, 2, 5, 6, 7, 8])
    np.testing.assert_array_equal(joined.points[3:], b.points)


def test_side_branch_keeps_junction_murray_exact() -> None:
    b = TreeBuilder()
    nodes = b.add_trunk(np.array([[0, 0, 0], [0, 0, 20], [0, 0, 40.0]]), radii=(2.0, 1.5))
    at = nodes[len(nodes) // 2]

    r_side = b.side_branch_radius(at, 0.5)
    side = b.add_node(b.point(at) + np.array([3.0, 0, 0]), r_side, at)
    tree = b.build()

    main = next(c for c in tree.children()[at] if c != side)
    assert tree.radius[main] ** 3 + tree.radius[side] ** 3 == pytest.approx(tree.radius[at] ** 3)
    assert tree.radius[side] == pytest.approx(0.5 * tree.radius[main])
    with pytest.raises(ValueError, match="exactly 1"):
        b.side_branch_radius(at, 0.5)


def test_domain_projection_lands_inside() -> None:
    domain = Domain(
        centre=np.array([0.0, 5.0, 10.0]),
        semi_axes=np.array([60.0, 80.0, 70.0]),
        half_spaces=[(np.array([1.0, 0.0, 0.0]), 5.0)],
    )
    rng = np.random.default_rng(0)

    for p in rng.normal(scale=150.0, size=(200, 3)):
        inside = domain.project_inside(p)
        q = (inside - domain.centre) / domain.semi_axes
        assert np.sqrt(q @ q) <= 0.97 + 1e-9
        if domain.contains(p, margin=0.97):
            np.testing.assert_allclose(inside, p)
