"""Semantic labels of a series and its frames: plane, C-arm angles, view, prompt.

Plane, in order of preference (recorded in `plane_source`):
1. ``image_type``: Image Type value 3 is ``BIPLANE A`` / ``BIPLANE B`` / ``SINGLE PLANE``;
2. ``plane_identification``: Enhanced XA Plane Identification (``PLANE A``, ``PLANE B``,
   ``MONOPLANE``);
3. ``angle``: a documented fallback from the primary angle: within 45 degrees of 0 or 180 is
   posteroanterior (A), within 45 degrees of +-90 is lateral (B);
4. ``unknown`` when none applies.

Angles: Positioner Primary/Secondary Angle give the first frame's position; when the positioner
moves, the per-frame increments (0018,1520)/(0018,1521) are accumulated from the second frame on
(the first increment is taken as the first frame's offset from the stated angle).
"""

from __future__ import annotations

import numpy as np

from angiosynth.dicom.headers import Header

_IMAGE_TYPE_PLANES = {"BIPLANE A": "A", "BIPLANE B": "B", "SINGLE PLANE": "single"}
_PLANE_IDENTIFICATION = {"PLANE A": "A", "PLANE B": "B", "MONOPLANE": "single"}


def plane_of(header: Header) -> tuple[str, str]:
    """Returns (plane, source): plane is A, B, single or unknown (module docstring)."""
    if len(header.image_type) >= 3 and header.image_type[2] in _IMAGE_TYPE_PLANES:
        return _IMAGE_TYPE_PLANES[header.image_type[2]], "image_type"
    if header.plane_identification in _PLANE_IDENTIFICATION:
        return _PLANE_IDENTIFICATION[header.plane_identification], "plane_identification"
    if header.primary_angle is not None:
        folded = abs(((header.primary_angle + 90.0) % 180.0) - 90.0)  # 0 = PA/AP, 90 = lateral
        if folded <= 45.0:
            return "A", "angle"
        return "B", "angle"
    return "unknown", "unknown"


def frame_angles(header: Header) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (primary, secondary) angles, shape (F,) each; NaN where unknown."""
    n = header.n_frames
    out = []
    for base, increments in (
        (header.primary_angle, header.primary_increments),
        (header.secondary_angle, header.secondary_increments),
    ):
        if base is None:
            out.append(np.full(n, np.nan))
            continue
        angles = np.full(n, float(base))
        if len(increments) == n:
            steps = np.asarray(increments, dtype=float)
            angles = base + steps[0] + np.concatenate([[0.0], np.cumsum(steps[1:])])
        out.append(angles)
    return out[0], out[1]
