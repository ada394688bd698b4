"""X-ray image formation: line integrals through vessels and head, Beer-Lambert, blur, noise.

Vessels are cylinders of constant radius between consecutive nodes. For a parallel ray at
distance d (in the detector plane) from a segment's projected axis, the chord through the
cylinder is 2 sqrt(r^2 - d^2) / sin(theta), theta being the angle between ray and axis, capped at
the segment's own length / |cos(theta)|. Each pixel is credited to the segment whose projected
span [0, 1) it falls in, so consecutive segments tile a vessel without double counting.

The geometry of one view is computed once as a sparse (pixel, segment, chord) list; each frame is
then a weighted bincount with the segments' contrast concentrations at that time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from angiosynth.phantom.anatomy import Ellipsoid
from angiosynth.phantom.geometry import Detector, View
from angiosynth.phantom.vessels import VesselTree

#: Largest kernel radius blurred directly; wider kernels blur a downsampled image.
_DIRECT_BLUR_MAX_RADIUS = 12
#: Stencil sizes (pixels) used to rasterise segments in vectorised groups.
_STENCILS = (6, 12, 24, 48, 96)


@dataclass(frozen=True)
class SparseProjection:
    """Chord lengths of one tree in one view.

    Attributes:
        pixel: (K,) flat pixel indices (row * size + col).
        segment: (K,) node index ending the segment that covers the pixel.
        chord_mm: (K,) chord length of the ray through that segment.
        size: detector pixels per side.
    """

    pixel: np.ndarray
    segment: np.ndarray
    chord_mm: np.ndarray
    size: int

    def integrate(self, weight_per_node: np.ndarray) -> np.ndarray:
        """Returns the (size, size) line integral of a per-node quantity (e.g. concentration)."""
        flat = np.bincount(
            self.pixel,
            weights=self.chord_mm * weight_per_node[self.segment],
            minlength=self.size**2,
        )
        return flat.reshape(self.size, self.size)


def project_tree(tree: VesselTree, detector: Detector, view: View) -> SparseProjection:
    """Rasterises every segment of a tree into chord lengths on the detector."""
    nodes = tree.segment_nodes
    p1 = tree.points[nodes]
    p0 = tree.points[tree.parent[nodes]]
    axis = p1 - p0
    length = np.linalg.norm(axis, axis=1) + 1e-9
    cos_t = np.abs(axis @ view.beam) / length
    sin_t = np.sqrt(np.clip(1 - cos_t**2, 0, 1))
    a = detector.to_pixels(p0, view)
    b = detector.to_pixels(p1, view)
    r_px = tree.radius[nodes] / detector.spacing_mm
    extent = np.maximum(np.abs(b - a).max(axis=1), 0) + 2 * r_px + 3
    parts = []
    for lo, hi in zip((0, *_STENCILS[:-1]), _STENCILS, strict=True):
        sel = np.flatnonzero((extent > lo) & (extent <= hi))
        if hi == _STENCILS[-1]:
            sel = np.flatnonzero(extent > lo)
        if sel.size:
            parts.append(
                _rasterise_group(
                    hi,
                    a[sel],
                    b[sel],
                    r_px[sel],
                    sin_t[sel],
                    cos_t[sel],
                    length[sel],
                    nodes[sel],
                    detector,
                )
            )
    pixel, segment, chord = (np.concatenate(x) for x in zip(*parts, strict=True))
    return SparseProjection(pixel.astype(np.int64), segment.astype(np.int64), chord, detector.size)


def _rasterise_group(k, a, b, r_px, sin_t, cos_t, length, nodes, detector):
    """Chord lengths of a group of segments on k x k pixel stencils around each segment."""
    centre = (a + b) / 2
    origin = np.floor(centre - k / 2).astype(np.int64)  # (S, 2) top-left pixel of the stencil
    offs = np.arange(k)
    rows = origin[:, 0, None, None] + offs[None, :, None]  # (S, k, 1)
    cols = origin[:, 1, None, None] + offs[None, None, :]  # (S, 1, k)
    qa_r = rows - a[:, 0, None, None]
    qa_c = cols - a[:, 1, None, None]
    ab = b - a
    ab2 = (ab**2).sum(axis=1)
    degenerate = ab2 < 0.25  # segment almost along the beam: a disc
    safe_ab2 = np.where(degenerate, 1.0, ab2)
    t = (qa_r * ab[:, 0, None, None] + qa_c * ab[:, 1, None, None]) / safe_ab2[:, None, None]
    d2_line = qa_r**2 + qa_c**2 - t**2 * safe_ab2[:, None, None]
    d2_mid = (rows - centre[:, 0, None, None]) ** 2 + (cols - centre[:, 1, None, None]) ** 2
    deg = degenerate[:, None, None]
    d2 = np.where(deg, d2_mid, d2_line)
    inside = np.where(deg, True, (t >= 0) & (t < 1))
    r2 = (r_px**2)[:, None, None]
    half = np.sqrt(np.clip(r2 - d2, 0, None)) * detector.spacing_mm
    cap = (length / np.maximum(cos_t, 1e-3))[:, None, None]
    chord = np.minimum(2 * half / np.maximum(sin_t, 1e-3)[:, None, None], cap)
    chord = np.where(deg & (d2 < r2), length[:, None, None], chord)
    keep = inside & (d2 < r2) & (rows >= 0) & (rows < detector.size) & (cols >= 0)
    keep &= cols < detector.size
    s_idx, i_idx, j_idx = np.nonzero(keep)
    pix = rows[s_idx, i_idx, 0] * detector.size + cols[s_idx, 0, j_idx]
    return pix, nodes[s_idx], chord[s_idx, i_idx, j_idx].astype(np.float32)


def ellipsoid_chords(bodies: list[Ellipsoid], detector: Detector, view: View) -> np.ndarray:
    """Line integral (mm of bone-equivalent) of a set of ellipsoids; returns (size, size).

    In each ellipsoid's normalised frame a ray p + t d meets the unit sphere where
    |p + t d|^2 = 1; the chord is 2 sqrt(disc) / |d|^2 with disc = (p.d)^2 - |d|^2 (|p|^2 - 1).
    Since p is affine in the pixel's row and column offsets, every term is an outer sum of
    1-D arrays, which keeps this cheap at full resolution.
    """
    offsets = (np.arange(detector.size) - (detector.size - 1) / 2.0) * detector.spacing_mm
    o_r, o_c = offsets[:, None].astype(np.float32), offsets[None, :].astype(np.float32)
    total = np.zeros((detector.size, detector.size), dtype=np.float32)
    for body in bodies:
        inv = body.rotation.T
        p0 = (inv @ -body.centre) / body.axes
        u = (inv @ view.down) / body.axes
        v = (inv @ view.right) / body.axes
        d = (inv @ view.beam) / body.axes
        dd = np.float32(d @ d)
        f32 = np.float32
        pd = (f32(p0 @ d) + o_r * f32(u @ d)) + o_c * f32(v @ d)
        pp = (f32(p0 @ p0 - 1) + 2 * o_r * f32(p0 @ u) + o_r**2 * f32(u @ u)) + (
            2 * o_c * f32(p0 @ v) + o_c**2 * f32(v @ v)
        )
        pp += f32(2 * (u @ v)) * o_r * o_c
        disc = pd * pd - dd * pp
        np.maximum(disc, 0, out=disc)
        total += f32(body.density * 2 / dd) * np.sqrt(disc)
    return total


def gaussian_blur(image: np.ndarray, sigma_px: float, truncate: float = 3.0) -> np.ndarray:
    """Separable Gaussian blur of the last two axes of (..., H, W), renormalised at the borders.

    Border pixels average only the neighbours that exist (the kernel is cut at the edge and its
    weights renormalised), which keeps flat images flat without padding copies.
    """
    if sigma_px <= 0:
        return image
    radius = max(1, int(np.ceil(truncate * sigma_px - 1e-6)))
    if radius > _DIRECT_BLUR_MAX_RADIUS and image.ndim == 2:
        return _blur_downsampled(image, sigma_px)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    out = image.astype(np.float32)
    for axis in (-1, -2):
        n = out.shape[axis]
        acc = kernel[radius] * out
        src, dst = [slice(None)] * out.ndim, [slice(None)] * out.ndim
        for offset in range(1, radius + 1):
            for sign in (1, -1):
                src[axis] = slice(offset, n) if sign > 0 else slice(0, n - offset)
                dst[axis] = slice(0, n - offset) if sign > 0 else slice(offset, n)
                acc[tuple(dst)] += kernel[radius + sign * offset] * out[tuple(src)]
        weight = np.convolve(np.ones(n, dtype=np.float32), kernel, mode="same")
        shape = [1] * out.ndim
        shape[axis] = n
        out = acc / weight.reshape(shape)
    return out


def _blur_downsampled(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Wide Gaussian blur of a (H, W) image: block-mean downsample, blur, bilinear upsample.

    For kernels much wider than a pixel the result matches a direct blur to well under 1 % of the
    image's range, at a fraction of the cost.
    """
    f = max(2, int(sigma_px // 3))
    h, w = image.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(image.astype(np.float32), [(0, hp - h), (0, wp - w)], mode="edge")
    small = padded.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
    small = gaussian_blur(small, sigma_px / f)
    rows = np.clip((np.arange(h) + 0.5) / f - 0.5, 0, small.shape[0] - 1)
    cols = np.clip((np.arange(w) + 0.5) / f - 0.5, 0, small.shape[1] - 1)
    r0, c0 = rows.astype(int), cols.astype(int)
    r1, c1 = np.minimum(r0 + 1, small.shape[0] - 1), np.minimum(c0 + 1, small.shape[1] - 1)
    fr, fc = (rows - r0)[:, None].astype(np.float32), (cols - c0)[None, :].astype(np.float32)
    top = small[r0][:, c0] * (1 - fc) + small[r0][:, c1] * fc
    bottom = small[r1][:, c0] * (1 - fc) + small[r1][:, c1] * fc
    return top * (1 - fr) + bottom * fr


def smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field of shape (size, size)."""
    coarse = max(4, int(size / max(sigma_px, 1.0)))
    field = rng.normal(size=(coarse, coarse))
    idx = np.linspace(0, coarse - 1, size)
    i0 = np.floor(idx).astype(int)
    i1 = np.minimum(i0 + 1, coarse - 1)
    f = idx - i0
    rows = field[i0] * (1 - f)[:, None] + field[i1] * f[:, None]
    full = rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]
    full -= full.mean()
    return full / (full.std() + 1e-12)
