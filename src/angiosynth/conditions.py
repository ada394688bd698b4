"""The semantic conditions of the paper: circulation x plane x canonical C-arm angles (Table 1).

Like `config`, this module imports nothing else from angiosynth, so every stage can use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The four canonical conditions of the reader study, in the paper's order.
CONDITIONS = ("AC A", "PC A", "AC B", "PC B")
#: Every view label, the canonical ones followed by the catch-all.
VIEWS = (*CONDITIONS, "Others")
#: Canonical (primary, secondary) angles of each plane (degrees).
CANONICAL_ANGLES = {"A": (0.0, 0.0), "B": (-90.0, 0.0)}
#: Half-width of the canonical angle bins (degrees, inclusive).
CANONICAL_TOLERANCE_DEG = 5.0
_PREFIX = {"anterior": "AC", "posterior": "PC"}


def canonical_view(circulation: str, plane: str, primary: float, secondary: float) -> str:
    """The view label of a frame: 'AC A', 'PC A', 'AC B', 'PC B' or 'Others'.

    A view is canonical when both angles are within +-5 degrees (inclusive) of the plane's
    canonical angles: 0/0 for Plane A, -90/0 for Plane B. Circulations other than anterior and
    posterior have no view and return ''.
    """
    prefix = _PREFIX.get(circulation)
    if prefix is None:
        return ""
    target = CANONICAL_ANGLES.get(plane)
    if target is None:
        return "Others"
    tol = CANONICAL_TOLERANCE_DEG
    if abs(primary - target[0]) <= tol and abs(secondary - target[1]) <= tol:
        return f"{prefix} {plane}"
    return "Others"


PROMPT_TEMPLATE = (
    "This is {article} {circulation} DSA scan taken in Plane {plane}, "
    "with a primary angle of {primary}° and a secondary angle of {secondary}°."
)


def prompt_angle(angle: float, canonical: float) -> int:
    """The angle written in a prompt: the canonical value inside its +-5 degree bin, else the
    angle rounded to the nearest degree."""
    if abs(angle - canonical) <= CANONICAL_TOLERANCE_DEG:
        return round(canonical)
    return round(angle)


def prompt_for(circulation: str, plane: str, primary: float, secondary: float) -> str:
    """The paper's template sentence for one frame (SPEC.md "Models").

    Args:
        circulation: "anterior" or "posterior".
        plane: "A" or "B".
        primary, secondary: C-arm angles in degrees.
    """
    if circulation not in _PREFIX:
        raise ValueError(f"prompts need an anterior or posterior circulation, got {circulation!r}")
    if plane not in CANONICAL_ANGLES:
        raise ValueError(f"prompts need plane A or B, got {plane!r}")
    target_primary, target_secondary = CANONICAL_ANGLES[plane]
    return PROMPT_TEMPLATE.format(
        article="an" if circulation == "anterior" else "a",
        circulation=circulation,
        plane=plane,
        primary=prompt_angle(primary, target_primary),
        secondary=prompt_angle(secondary, target_secondary),
    )


_PROMPT_PATTERN = re.compile(
    r"this is an? (?P<circulation>anterior|posterior) dsa scan taken in plane (?P<plane>[ab]), "
    r"with a primary angle of (?P<primary>-?\d+)° and a secondary angle of (?P<secondary>-?\d+)°\.?"
)


@dataclass(frozen=True)
class PromptView:
    """What a template prompt asks for (circulation, plane, angles) and its view (condition)."""

    circulation: str
    plane: str
    primary_angle: float
    secondary_angle: float

    @property
    def view(self) -> str:
        """AC A, PC A, AC B, PC B or Others."""
        return canonical_view(
            self.circulation, self.plane, self.primary_angle, self.secondary_angle
        )


def parse_prompt(prompt: str) -> PromptView | None:
    """Reads circulation, plane and angles back from a template sentence (case and spacing
    ignored); None when the prompt does not follow the template (e.g. the empty prompt)."""
    match = _PROMPT_PATTERN.fullmatch(" ".join(prompt.lower().split()))
    if match is None:
        return None
    return PromptView(
        match["circulation"], match["plane"].upper(),
        float(match["primary"]), float(match["secondary"]),
    )  # fmt: skip


def condition_prompt(condition: str) -> str:
    """The prompt of a condition ("AC A", "PC A", "AC B", "PC B") at its canonical angles."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    prefix, plane = condition.split()
    circulation = next(c for c, p in _PREFIX.items() if p == prefix)
    return prompt_for(circulation, plane, *CANONICAL_ANGLES[plane])
