"""3D vessel trees: a flat node representation, trunk splines and Murray's-law growth.

A tree is a set of nodes (points with a radius); every node but a root has a parent, and the
segment from parent to node is a cylinder of the node's radius. Radii obey Murray's law at every
bifurcation grown here (r0^3 = r1^3 + r2^3) and branching angles follow from the radius ratio
(Murray 1926, minimum work):

    cos(theta_1) = (r0^4 + r1^4 - r2^4) / (2 r0^2 r1^2)

so a thin side branch leaves at a wide angle while the thicker child continues almost straight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class SegmentClass(IntEnum):
    """Ground-truth vessel class of a segment (the reader study's proximal/medium/peripheral)."""

    PROXIMAL = 1
    MEDIUM = 2
    PERIPHERAL = 3
    VENOUS = 4


#: Radius thresholds (mm) between proximal / medium / peripheral arterial segments.
PROXIMAL_MIN_RADIUS_MM = 1.0
MEDIUM_MIN_RADIUS_MM = 0.45


def arterial_class(radius_mm: float) -> SegmentClass:
    """Classifies an arterial segment by calibre (large trunks, medium branches, small distal)."""
    if radius_mm >= PROXIMAL_MIN_RADIUS_MM:
        return SegmentClass.PROXIMAL
    if radius_mm >= MEDIUM_MIN_RADIUS_MM:
        return SegmentClass.MEDIUM
    return SegmentClass.PERIPHERAL


@dataclass
class VesselTree:
    """Flat arrays describing a forest of vessel trees.

    Attributes:
        points: (N, 3) node positions in patient coordinates (mm).
        radius: (N,) radius of the segment ending at each node (mm).
        parent: (N,) index of the parent node, -1 for roots.
        path_mm: (N,) path length from the tree's inflow (arteries) or outflow (veins).
        segment_class: (N,) SegmentClass values.
    """

    points: np.ndarray
    radius: np.ndarray
    parent: np.ndarray
    path_mm: np.ndarray
    segment_class: np.ndarray

    @property
    def segment_nodes(self) -> np.ndarray:
        """(S,) indices of nodes that end a segment (every node with a parent)."""
        return np.flatnonzero(self.parent >= 0)

    def children(self) -> list[list[int]]:
        """Children of every node (list of N lists)."""
        kids: list[list[int]] = [[] for _ in range(len(self.parent))]
        for node, par in enumerate(self.parent):
            if par >= 0:
                kids[par].append(node)
        return kids

    @staticmethod
    def concatenate(trees: list[VesselTree], path_offsets: list[float] | None = None) -> VesselTree:
        """Joins trees into one forest, re-indexing parents and shifting path lengths."""
        offsets = path_offsets or [0.0] * len(trees)
        base, parents = 0, []
        for tree in trees:
            parents.append(np.where(tree.parent >= 0, tree.parent + base, -1))
            base += len(tree.parent)
        return VesselTree(
            points=np.concatenate([t.points for t in trees]),
            radius=np.concatenate([t.radius for t in trees]),
            parent=np.concatenate(parents),
            path_mm=np.concatenate([t.path_mm + o for t, o in zip(trees, offsets, strict=True)]),
            segment_class=np.concatenate([t.segment_class for t in trees]),
        )


@dataclass
class Domain:
    """Where grown vessels may run: an ellipsoid, cut by half-spaces n.x >= c, and optionally
    hollowed by an inner ellipsoid they must stay outside of (e.g. scalp vessels around the skull).

    Attributes:
        centre: (3,) centre of the ellipsoids.
        semi_axes: (3,) semi-axes of the outer ellipsoid.
        half_spaces: list of ((3,) normal, offset) pairs.
        hollow_axes: (3,) semi-axes of the excluded inner ellipsoid, or None.
    """

    centre: np.ndarray
    semi_axes: np.ndarray
    half_spaces: list[tuple[np.ndarray, float]] = field(default_factory=list)
    hollow_axes: np.ndarray | None = None

    def _radius(self, p: np.ndarray, axes: np.ndarray) -> float:
        q = (p - self.centre) / axes
        return math.sqrt(q @ q)

    def contains(self, p: np.ndarray, margin: float = 1.0) -> bool:
        """True when p lies inside the outer ellipsoid scaled by `margin`, outside the hollow and
        on the allowed side of every half-space."""
        if self._radius(p, self.semi_axes) > margin:
            return False
        if self.hollow_axes is not None and self._radius(p, self.hollow_axes) < 1.0:
            return False
        return all(n @ p >= c for n, c in self.half_spaces)

    def inward_normal(self, p: np.ndarray) -> np.ndarray:
        """Unit vector pointing back into the domain from near its boundary."""
        if self.hollow_axes is not None and self._radius(p, self.hollow_axes) < 1.0:
            return _unit((p - self.centre) / self.hollow_axes**2)
        return -_unit((p - self.centre) / self.semi_axes**2)

    def project_inside(self, p: np.ndarray, margin: float = 0.97) -> np.ndarray:
        """Moves p just inside the domain: onto every half-space, inside the outer ellipsoid
        (scaled by `margin`) and out of the hollow."""
        for n, c in self.half_spaces:
            if n @ p < c:
                p = p + (c - n @ p + 0.5) * n
        if self.hollow_axes is not None:
            inner = self._radius(p, self.hollow_axes)
            if inner < 1.02:
                p = self.centre + (p - self.centre) * (1.02 / max(inner, 1e-6))
        outer = self._radius(p, self.semi_axes)
        if outer > margin:
            p = self.centre + (p - self.centre) * (margin / outer)
        return p


@dataclass(frozen=True)
class GrowthParams:
    """Parameters of stochastic branch growth.

    Attributes:
        min_radius_mm: branches stop bifurcating below this radius.
        length_per_radius: (low, high) range of segment length / radius between bifurcations.
        step_mm: spacing of nodes along a branch.
        tortuosity: standard deviation of the random turn per sqrt(mm).
        target_pull: weight of the pull towards the branch's target per step.
        asymmetry: (low, high) range of the radius ratio r2 / r1 of the two children.
        max_depth: safety limit on bifurcation generations.
    """

    min_radius_mm: float = 0.22
    length_per_radius: tuple[float, float] = (10.0, 26.0)
    step_mm: float = 2.0
    tortuosity: float = 0.12
    target_pull: float = 0.08
    asymmetry: tuple[float, float] = (0.35, 1.0)
    max_depth: int = 14


def murray_children(r0: float, ratio: float) -> tuple[float, float]:
    """Radii (r1, r2) of two children with r2 = ratio * r1 and r1^3 + r2^3 = r0^3."""
    r1 = r0 / (1.0 + ratio**3) ** (1.0 / 3.0)
    return r1, ratio * r1


def murray_angles(r0: float, r1: float, r2: float) -> tuple[float, float]:
    """Branching angles (radians) of the two children from the parent's direction."""
    c1 = (r0**4 + r1**4 - r2**4) / (2 * r0**2 * r1**2)
    c2 = (r0**4 + r2**4 - r1**4) / (2 * r0**2 * r2**2)
    return float(np.arccos(np.clip(c1, -1, 1))), float(np.arccos(np.clip(c2, -1, 1)))


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of v about a unit axis."""
    return (
        v * np.cos(angle)
        + _cross(axis, v) * np.sin(angle)
        + axis * (axis @ v) * (1 - np.cos(angle))
    )


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross is slow on single vectors)."""
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (math.sqrt(v @ v) + 1e-12)


def catmull_rom(control: np.ndarray, step_mm: float) -> np.ndarray:
    """Samples a Catmull-Rom spline through (K, 3) control points every ~step_mm; returns (M, 3)."""
    pts = np.vstack([2 * control[0] - control[1], control, 2 * control[-1] - control[-2]])
    out = [control[:1]]
    for i in range(1, len(pts) - 2):
        p0, p1, p2, p3 = pts[i - 1 : i + 3]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        seg = 0.5 * (
            2 * p1
            + (-p0 + p2) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
        )
        out.append(seg)
    return np.vstack(out)


class TreeBuilder:
    """Accumulates nodes; trunks come from splines, branches from stochastic growth."""

    def __init__(self) -> None:
        self._points: list[np.ndarray] = []
        self._radius: list[float] = []
        self._parent: list[int] = []
        self._path: list[float] = []
        self._class: list[int] = []
        self._children: list[list[int]] = []

    def __len__(self) -> int:
        return len(self._points)

    def point(self, node: int) -> np.ndarray:
        """Position of a node."""
        return self._points[node]

    def radius(self, node: int) -> float:
        """Radius of the segment ending at a node."""
        return self._radius[node]

    def add_node(self, p: np.ndarray, radius: float, parent: int, cls: int | None = None) -> int:
        """Appends a node; the class defaults to the arterial class of its radius."""
        p = np.asarray(p, dtype=float)
        path = 0.0
        if parent >= 0:
            delta = p - self._points[parent]
            path = self._path[parent] + math.sqrt(delta @ delta)
        self._points.append(p)
        self._radius.append(float(radius))
        self._parent.append(parent)
        self._path.append(path)
        self._class.append(int(cls if cls is not None else arterial_class(radius)))
        self._children.append([])
        if parent >= 0:
            self._children[parent].append(len(self._points) - 1)
        return len(self._points) - 1

    def n_children(self, node: int) -> int:
        """Number of children of a node so far."""
        return len(self._children[node])

    def side_branch_radius(self, node: int, ratio: float) -> float:
        """Makes room for a side branch at `node` and returns its radius (Murray's law).

        The node's existing subtree keeps r1 and the side branch gets r2 = ratio * r1, with
        r1^3 + r2^3 = r_node^3. The existing subtree is rescaled as a whole, which keeps every
        junction inside it Murray-exact.
        """
        kids = self._children[node]
        if len(kids) != 1:
            raise ValueError(f"node {node} has {len(kids)} children; side branches need exactly 1")
        r_main, r_side = murray_children(self._radius[node], ratio)
        self._scale_subtree(kids[0], r_main / self._radius[kids[0]])
        return r_side

    def _scale_subtree(self, root: int, factor: float) -> None:
        stack = [root]
        while stack:
            n = stack.pop()
            self._radius[n] *= factor
            stack.extend(self._children[n])

    def add_trunk(
        self,
        control: np.ndarray,
        radii: tuple[float, float],
        parent: int = -1,
        cls: int | None = None,
        step_mm: float = 1.0,
    ) -> list[int]:
        """Adds a spline through (K, 3) control points, radius tapering radii[0] -> radii[1].

        Returns:
            Node indices along the trunk, first to last.
        """
        samples = catmull_rom(np.asarray(control, dtype=float), step_mm)
        if parent >= 0:
            samples = samples[1:] if np.allclose(samples[0], self._points[parent]) else samples
        radius = np.linspace(radii[0], radii[1], len(samples))
        nodes, prev = [], parent
        for p, r in zip(samples, radius, strict=True):
            prev = self.add_node(p, r, prev, cls)
            nodes.append(prev)
        return nodes

    def grow(
        self,
        start: int,
        direction: np.ndarray,
        radius: float,
        target: np.ndarray,
        domain: Domain,
        params: GrowthParams,
        rng: np.random.Generator,
        cls: Callable[[float], int] = arterial_class,
    ) -> None:
        """Grows a stochastic bifurcating tree from node `start` towards `target` in `domain`."""
        stack = [(start, _unit(direction), radius, np.asarray(target, float), 0)]
        while stack:
            node, d, r, tgt, depth = stack.pop()
            length = r * rng.uniform(*params.length_per_radius)
            node, d, alive = self._walk(node, d, r, length, tgt, domain, params, rng, cls)
            if not alive or r < params.min_radius_mm or depth >= params.max_depth:
                continue
            ratio = rng.uniform(*params.asymmetry)
            r1, r2 = murray_children(r, ratio)
            th1, th2 = murray_angles(r, r1, r2)
            axis = _unit(_cross(d, _unit(rng.normal(size=3))))
            distance = np.linalg.norm(tgt - self._points[node])
            for rc, th, spread in ((r1, th1, 0.3), (r2, -th2, 0.9)):
                if rc < 0.5 * params.min_radius_mm:
                    continue
                child_dir = _rotate(d, axis, th)
                jitter = rng.normal(scale=spread * distance + 8.0, size=3)
                child_tgt = domain.project_inside(tgt + jitter)
                stack.append((node, child_dir, rc, child_tgt, depth + 1))

    def _walk(
        self,
        node: int,
        d: np.ndarray,
        r: float,
        length: float,
        target: np.ndarray,
        domain: Domain,
        params: GrowthParams,
        rng: np.random.Generator,
        cls: Callable[[float], int],
    ) -> tuple[int, np.ndarray, bool]:
        """Extends a branch by `length` mm; returns the last node, direction and if it lives."""
        step = float(np.clip(3.0 * r, 1.0, params.step_mm))
        n_steps = max(1, round(length / step))
        kicks = rng.normal(scale=params.tortuosity * np.sqrt(step), size=(n_steps, 3))
        for kick in kicks:
            p = self._points[node]
            d = _unit(d + kick + params.target_pull * _unit(target - p))
            nxt = p + step * d
            if not domain.contains(nxt, margin=0.98):
                inward = domain.inward_normal(nxt)
                d = _unit(d - min(0.0, d @ inward) * inward * 1.5)
                nxt = domain.project_inside(p + step * d)
                if np.linalg.norm(nxt - p) < 0.2 * step:
                    return node, d, False
            node = self.add_node(nxt, r, node, cls(r))
        return node, d, True

    def build(self) -> VesselTree:
        """Freezes the accumulated nodes into a VesselTree (arterial classes follow final radii)."""
        radius = np.asarray(self._radius, dtype=float)
        cls = np.asarray(self._class, dtype=np.uint8)
        arterial = np.select(
            [radius >= PROXIMAL_MIN_RADIUS_MM, radius >= MEDIUM_MIN_RADIUS_MM],
            [SegmentClass.PROXIMAL, SegmentClass.MEDIUM],
            SegmentClass.PERIPHERAL,
        ).astype(np.uint8)
        return VesselTree(
            points=np.asarray(self._points, dtype=float).reshape(-1, 3),
            radius=radius,
            parent=np.asarray(self._parent, dtype=np.int64),
            path_mm=np.asarray(self._path, dtype=float),
            segment_class=np.where(cls == SegmentClass.VENOUS, cls, arterial),
        )
