"""Circulation rules: default English and German terms, precedence, YAML rule files."""

from __future__ import annotations

from pathlib import Path

import pytest

from angiosynth.config import ConfigError
from angiosynth.curation.rules import (
    DEFAULT_RULES,
    UNKNOWN_REASON,
    CirculationRules,
    classify_circulation,
    load_rules,
)

from .helpers import run_curate


@pytest.mark.parametrize(
    ("text", "circulation", "reason"),
    [
        ("ICA links", "anterior", None),
        ("A. carotis interna re", "anterior", None),
        ("L ICA", "anterior", None),
        ("Internal carotid right", "anterior", None),
        ("Carotis interna links", "anterior", None),
        ("A. vertebralis li", "posterior", None),
        ("VA rechts", "posterior", None),
        ("Vertebral left", "posterior", None),
        ("Basilaris", "posterior", None),
        ("ECA rechts", "excluded", "external carotid"),
        ("A. carotis externa li", "excluded", "external carotid"),
        ("CCA links", "excluded", "common carotid"),
        ("A. carotis communis re", "excluded", "common carotid"),
        ("Common carotid left", "excluded", "common carotid"),
        ("Aortenbogen", "excluded", "aortic arch"),
        ("Aortic arch", "excluded", "aortic arch"),
    ],
)
def test_default_rules_classify_english_and_german_terms(
    text: str, circulation: str, reason: str | None
) -> None:
    for texts in [(text, "", ""), ("", text, ""), (text.upper(), "Kopf DSA", "HEAD")]:
        match = classify_circulation(texts, DEFAULT_RULES)

        assert (match.circulation, match.reason) == (circulation, reason), texts
        assert match.matched is not None and match.matched.lower() == text.lower()


@pytest.mark.parametrize(
    "texts", [("Run 4", "", ""), ("", "", ""), ("Serie 3", "Kopf DSA", "HEAD")]
)
def test_unknown_text_is_excluded_never_guessed(texts: tuple[str, str, str]) -> None:
    match = classify_circulation(texts, DEFAULT_RULES)

    assert match.circulation == "excluded"
    assert match.reason == UNKNOWN_REASON == "unknown circulation"
    assert match.matched is None


def test_description_beats_protocol_name_and_body_part() -> None:
    assert classify_circulation(("VA links", "ICA", ""), DEFAULT_RULES).circulation == "posterior"
    assert classify_circulation(("ICA links", "ECA", ""), DEFAULT_RULES).circulation == "anterior"
    excluded = classify_circulation(("CCA re", "ICA", "VERTEBRAL"), DEFAULT_RULES)
    assert (excluded.circulation, excluded.reason) == ("excluded", "common carotid")
    # Empty or unmatched texts fall through to the next text, in order.
    assert classify_circulation(("", "ICA", "VERTEBRAL"), DEFAULT_RULES).circulation == "anterior"
    fallback = classify_circulation(("Run 4", "Serie 3", "VERTEBRAL"), DEFAULT_RULES)
    assert (fallback.circulation, fallback.matched) == ("posterior", "VERTEBRAL")


def test_first_matching_rule_wins_within_one_text() -> None:
    # "carotis externa" also says "carotis": the exclusion comes first.
    assert classify_circulation(("Carotis externa", "", ""), DEFAULT_RULES).reason == (
        "external carotid"
    )
    assert classify_circulation(("common carotid", "", ""), DEFAULT_RULES).reason == (
        "common carotid"
    )


def test_load_rules_without_a_file_gives_the_defaults() -> None:
    assert load_rules(None) is DEFAULT_RULES


def test_configs_rules_file_equals_the_defaults() -> None:
    path = Path(__file__).parents[2] / "configs" / "curation_rules.yaml"

    assert load_rules(path) == DEFAULT_RULES


CCA_ANTERIOR_YAML = r"""
rules:
  - {pattern: '\bECA\b|extern', circulation: excluded, reason: external carotid}
  - {pattern: '\bCCA\b|communis|common\s+carotid', circulation: anterior}
  - {pattern: 'aort|\barch\b|bogen', circulation: excluded, reason: aortic arch}
  - {pattern: '\bICA\b|interna\b|internal\s+carotid|\bcarotis\b', circulation: anterior}
  - {pattern: '\bVA\b|vertebral|basilar', circulation: posterior}
"""


def test_yaml_rules_can_move_common_carotid_to_anterior(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(CCA_ANTERIOR_YAML)

    rules = load_rules(path)

    assert isinstance(rules, CirculationRules) and len(rules.rules) == 5
    for text in ("CCA links", "A. carotis communis re", "Common carotid left"):
        assert classify_circulation((text, "", ""), rules).circulation == "anterior", text
    assert classify_circulation(("ECA rechts", "", ""), rules).reason == "external carotid"
    assert classify_circulation(("Run 4", "", ""), rules).reason == UNKNOWN_REASON


def test_yaml_rules_are_used_by_curate(curated, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(CCA_ANTERIOR_YAML)

    run_curate(curated.dicom, tmp_path / "dataset", rules=load_rules(path))

    import pandas as pd

    series = pd.read_parquet(tmp_path / "dataset" / "series.parquet")
    cca = series[series["description"].str.contains("CCA")]
    assert len(cca) > 0
    assert (cca["circulation"] == "anterior").all() and cca["excluded_reason"].isna().all()
    assert set(cca["view"]) <= {"AC A", "AC B", "Others"}


@pytest.mark.parametrize(
    ("yaml_text", "field", "message"),
    [
        ("rules:\n  - {pattern: '([', circulation: anterior}\n", "rules.0.pattern", "regular"),
        (
            "rules:\n  - {pattern: ICA, circulation: anterior}\n"
            "  - {pattern: VA, circulation: posterior, colour: red}\n",
            "rules.1.colour",
            "",
        ),
        (
            "rules:\n  - {pattern: ICA, circulation: anterior}\n"
            "  - {pattern: ECA, circulation: excluded}\n",
            "rules.1.reason",
            "required",
        ),
        ("rules:\n  - {pattern: ICA, circulation: arterial}\n", "rules.0.circulation", ""),
        ("rules:\n  - {circulation: anterior}\n", "rules.0.pattern", ""),
        ("rule:\n  - {pattern: ICA, circulation: anterior}\n", "rule", ""),
        ("- {pattern: ICA, circulation: anterior}\n", "", "mapping"),
    ],
)
def test_bad_rules_file_raises_config_error_naming_file_and_field(
    tmp_path: Path, yaml_text: str, field: str, message: str
) -> None:
    path = tmp_path / "bad_rules.yaml"
    path.write_text(yaml_text)

    with pytest.raises(ConfigError) as info:
        load_rules(path)

    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert field in text and message in text, text
    assert "\n" not in text


def test_broken_yaml_raises_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("rules: [\n")

    with pytest.raises(ConfigError, match="cannot read YAML") as info:
        load_rules(path)

    assert str(info.value).startswith(f"{path}: ")


def test_broken_yaml_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("rules: [\n")

    with pytest.raises(ConfigError) as info:
        load_rules(path)

    assert "\n" not in str(info.value)
