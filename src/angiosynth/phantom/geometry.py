"""C-arm projection geometry.

Patient coordinates follow DICOM's LPS convention, in millimetres, origin near the centre of the
head: +x towards the patient's left, +y posterior, +z superior.

The positioner angles follow DICOM (PS3.3 C.8.7.5): the primary angle rotates the beam about the
patient's cranio-caudal axis (+90 = LAO, detector at the patient's left; -90 = RAO, detector at the
patient's right) and the secondary angle tilts it towards the head (+ = cranial). At 0/0 the beam
runs posterior -> anterior (posteroanterior view, Plane A); at -90/0 it is a lateral view (Plane B).

Projection is parallel (the magnification of a real cone beam is folded into the pixel spacing).
That keeps line integrals exact and makes a 180 degree primary rotation an exact mirror image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    """A projection direction and detector frame.

    Attributes:
        beam: (3,) unit vector from source to detector.
        right: (3,) unit vector of increasing image column.
        down: (3,) unit vector of increasing image row.
    """

    beam: np.ndarray
    right: np.ndarray
    down: np.ndarray


def view_for_angles(primary_deg: float, secondary_deg: float) -> View:
    """Returns the beam direction and detector axes for C-arm angles in degrees."""
    a, b = np.deg2rad(primary_deg), np.deg2rad(secondary_deg)
    beam_axial = np.array([np.sin(a), -np.cos(a), 0.0])
    right = np.array([np.cos(a), np.sin(a), 0.0])
    superior = np.array([0.0, 0.0, 1.0])
    beam = np.cos(b) * beam_axial + np.sin(b) * superior
    up = np.cos(b) * superior - np.sin(b) * beam_axial
    return View(beam=beam, right=right, down=-up)


@dataclass(frozen=True)
class Detector:
    """A square detector grid in the plane through the origin perpendicular to the beam.

    Attributes:
        size: pixels per side.
        spacing_mm: pixel spacing in patient space (mm / pixel at the isocentre).
    """

    size: int
    spacing_mm: float

    def to_pixels(self, points: np.ndarray, view: View) -> np.ndarray:
        """Projects (N, 3) patient points to (N, 2) continuous (row, col) pixel coordinates."""
        centre = (self.size - 1) / 2.0
        rows = points @ view.down / self.spacing_mm + centre
        cols = points @ view.right / self.spacing_mm + centre
        return np.stack([rows, cols], axis=-1)

    def pixel_grid(self, view: View) -> np.ndarray:
        """Returns (H, W, 3) patient-space points of the pixel centres in the central plane."""
        centre = (self.size - 1) / 2.0
        offsets = (np.arange(self.size) - centre) * self.spacing_mm
        return (
            offsets[:, None, None] * view.down[None, None, :]
            + offsets[None, :, None] * view.right[None, None, :]
        )
