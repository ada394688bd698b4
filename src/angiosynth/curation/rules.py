"""Circulation from site-specific text: an ordered list of regular-expression rules.

Each rule is matched (case-insensitively) against Series Description, then Protocol Name, then
Body Part Examined; the first text that any rule matches decides, by the first rule matching it.
A series no rule matches is excluded as "unknown circulation", never guessed. Order matters:
exclusions (external or common carotid, arch) come before the internal carotid, because
"carotis externa" and "common carotid" also say "carotid".

A site changes the rules with a YAML file (``--rules RULES.yaml``)::

    rules:
      - {pattern: '\\b(ECA|externa|external)\\b', circulation: excluded, reason: external carotid}
      - {pattern: '\\bCCA\\b|communis|common carotid', circulation: anterior}  # site choice
      - {pattern: '\\bICA\\b|interna|internal carotid', circulation: anterior}

The file replaces the defaults entirely (copy ``configs/curation_rules.yaml`` to start).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from angiosynth.config import ConfigError, StrictModel, load_config

Circulation = Literal["anterior", "posterior", "excluded"]
UNKNOWN_REASON = "unknown circulation"


class CirculationRule(StrictModel):
    """One rule: a regular expression and what a match means.

    Attributes:
        pattern: Python regular expression, matched case-insensitively anywhere in the text.
        circulation: anterior, posterior or excluded.
        reason: why a matching series is excluded (required when circulation is excluded).
    """

    pattern: str
    circulation: Circulation
    reason: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"invalid regular expression {value!r}: {err}") from err
        return value


class CirculationRules(StrictModel):
    """An ordered list of rules (the first match wins)."""

    rules: list[CirculationRule]


DEFAULT_RULES = CirculationRules(
    rules=[
        CirculationRule(
            pattern=r"\bECA\b|extern|A\.?\s*carotis\s+ext", circulation="excluded",
            reason="external carotid",
        ),
        CirculationRule(
            pattern=r"\bCCA\b|communis|common\s+carotid", circulation="excluded",
            reason="common carotid",
        ),
        CirculationRule(
            pattern=r"aort|\barch\b|bogen", circulation="excluded", reason="aortic arch",
        ),
        CirculationRule(
            pattern=r"\bICA\b|interna\b|internal\s+carotid|\bcarotis\b|\bcarotid\b",
            circulation="anterior",
        ),
        CirculationRule(
            pattern=r"\bVA\b|vertebral|vertebralis|basilar|basilaris|\bPICA\b",
            circulation="posterior",
        ),
    ]
)  # fmt: skip


@dataclass(frozen=True)
class RuleMatch:
    """The outcome of classifying one series' texts."""

    circulation: Circulation
    reason: str | None
    matched: str | None  # the text the deciding rule matched, None when no rule matched


def load_rules(path: Path | None) -> CirculationRules:
    """Loads rules from YAML (a top-level `rules:` list), or the defaults when path is None."""
    if path is None:
        return DEFAULT_RULES
    rules = load_config(path, CirculationRules)
    for i, rule in enumerate(rules.rules):
        if rule.circulation == "excluded" and not rule.reason:
            raise ConfigError(f"{path}: rules.{i}.reason: required for excluded rules")
    return rules


def classify_circulation(texts: tuple[str, ...], rules: CirculationRules) -> RuleMatch:
    """Applies the rules in order; unmatched series are excluded.

    Texts are tried in the order given (Series Description, Protocol Name, Body Part), so the
    most specific text decides; within one text, the first matching rule wins.
    """
    compiled = [(re.compile(rule.pattern, re.IGNORECASE), rule) for rule in rules.rules]
    for text in texts:
        for regex, rule in compiled:
            if text and regex.search(text):
                return RuleMatch(rule.circulation, rule.reason, text)
    return RuleMatch("excluded", UNKNOWN_REASON, None)
