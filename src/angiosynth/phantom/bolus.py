"""Contrast timing: a gamma-variate bolus travelling along the vessel tree.

The time-density curve of a node whose bolus arrives at t0 is the gamma variate
((t - t0) / (alpha beta))^alpha exp(alpha - (t - t0) / beta) for t > t0, normalised to a peak of
1 at t0 + alpha beta. Arterial arrival grows with the path length from the injection point;
the capillary blush follows the distal arteries, and veins fill last, cortical veins before the
sinuses they drain into.

Phase of a frame (the ground truth written beside the archive), from the mean opacification of
the distal arteries (A), capillary bed (C) and veins (V), each in [0, 1]:
- ``mask``: acquired before the injection reaches the vessels (contrast-free by construction);
- ``early_arterial``: proximal arteries filling while the distal ones are still nearly empty,
  A < EARLY_ARTERIAL_MAX and rising;
- ``arterial``: the arterial tree opacified out to its distal branches, A >= EARLY_ARTERIAL_MAX
  and A >= C and A >= V (the distal arteries need not be at their peak: a reader calls a frame
  arterial once the distal branches show, which is also what the frame looks like);
- ``capillary``: C >= V otherwise;
- ``venous``: the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PHASES = ("mask", "early_arterial", "arterial", "capillary", "venous")
#: Distal arterial opacification (share of its peak) that ends the early arterial phase.
EARLY_ARTERIAL_MAX = 0.25


def gamma_variate(t: np.ndarray, t0: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Gamma-variate time-density curve normalised to a peak of 1 (broadcasts t against t0)."""
    x = np.clip((np.asarray(t) - np.asarray(t0)) / beta, 0, None)
    return (x / alpha) ** alpha * np.exp(alpha - x)


@dataclass(frozen=True)
class Bolus:
    """Timing of one injection (seconds from the first frame).

    Attributes:
        t_inject: arrival of contrast at the injection point.
        arterial_speed_mm_s: bolus front speed along arteries.
        alpha, beta: shape of the arterial gamma variate.
        capillary_delay_s: delay of the capillary blush after the distal arteries.
        venous_delay_s: delay of the earliest veins after the distal arteries.
        venous_speed_mm_s: speed of the front along veins (towards the outflow).
    """

    t_inject: float
    arterial_speed_mm_s: float
    alpha: float = 2.2
    beta: float = 0.45
    capillary_delay_s: float = 1.3
    venous_delay_s: float = 2.3
    venous_speed_mm_s: float = 220.0

    @staticmethod
    def sample(rng: np.random.Generator, t_inject: float) -> Bolus:
        """Draws a patient- and injection-specific bolus."""
        return Bolus(
            t_inject=t_inject,
            arterial_speed_mm_s=float(rng.uniform(260, 420)),
            alpha=float(rng.uniform(1.8, 2.6)),
            beta=float(rng.uniform(0.35, 0.55)),
            capillary_delay_s=float(rng.uniform(1.1, 1.6)),
            venous_delay_s=float(rng.uniform(2.0, 2.8)),
        )

    def distal_arrival(self, arterial_path_mm: np.ndarray) -> float:
        """Arrival time at the distal arteries (90th percentile of path length)."""
        return self.t_inject + float(np.percentile(arterial_path_mm, 90)) / self.arterial_speed_mm_s

    def arterial(self, t: np.ndarray, path_mm: np.ndarray) -> np.ndarray:
        """(T, N) arterial concentration at times t (T,) for nodes at path lengths (N,)."""
        t0 = self.t_inject + path_mm / self.arterial_speed_mm_s
        return gamma_variate(np.asarray(t)[:, None], t0[None, :], self.alpha, self.beta)

    def capillary(self, t: np.ndarray, arterial_path_mm: np.ndarray) -> np.ndarray:
        """(T,) capillary blush concentration."""
        distal_peak = self.distal_arrival(arterial_path_mm) + self.alpha * self.beta
        t0 = distal_peak + self.capillary_delay_s - 3.0 * 0.5  # gamma(3, 0.5) peaks 1.5 s after t0
        return gamma_variate(np.asarray(t), t0, 3.0, 0.5)

    def venous(
        self,
        t: np.ndarray,
        arterial_path_mm: np.ndarray,
        venous_path_mm: np.ndarray,
        venous_max: float | None = None,
    ) -> np.ndarray:
        """(T, N) venous concentration; venous paths run upstream from the outflow.

        Veins farthest upstream (largest path, up to `venous_max`) fill first.
        """
        start = self.distal_arrival(arterial_path_mm) + self.venous_delay_s
        top = venous_path_mm.max() if venous_max is None else venous_max
        t0 = start + (top - venous_path_mm) / self.venous_speed_mm_s
        return gamma_variate(np.asarray(t)[:, None], t0[None, :], 3.0, 0.6)


def classify_phase(
    t: float, t_inject: float, arterial: float, capillary: float, venous: float, rising: bool
) -> str:
    """Ground-truth phase of a frame from compartment opacities in [0, 1] (module docstring)."""
    if t <= t_inject:
        return "mask"
    if arterial < EARLY_ARTERIAL_MAX and rising and venous < 0.2:
        return "early_arterial"
    if arterial >= EARLY_ARTERIAL_MAX and arterial >= capillary and arterial >= venous:
        return "arterial"
    if capillary >= venous:
        return "capillary"
    return "venous"
