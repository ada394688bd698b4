"""Typed configuration: strict YAML loading with errors that name the file and field."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from angiosynth.config import ConfigError, PhantomConfig, load_config


def _yaml(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_section_loads_with_defaults_for_the_rest(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "phantom:\n  image_size: 128\n  oblique_share: 0.25\nother: {x: 1}\n")

    config = load_config(path, PhantomConfig, "phantom")

    assert isinstance(config, PhantomConfig)
    assert config.image_size == 128
    assert config.oblique_share == 0.25
    assert config.bits_stored == PhantomConfig().bits_stored
    assert config.pixel_spacing_mm == pytest.approx(config.field_of_view_mm / 128)


def test_whole_file_without_section(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "image_size: 256\nbits_stored: 16\n")

    config = load_config(path, PhantomConfig)

    assert (config.image_size, config.bits_stored) == (256, 16)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "")

    assert load_config(path, PhantomConfig, "phantom") == PhantomConfig()


def test_unknown_key_names_the_file_and_key(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "phantom:\n  image_size: 128\n  imag_size: 64\n", name="typo.yaml")

    with pytest.raises(ConfigError) as err:
        load_config(path, PhantomConfig, "phantom")

    message = str(err.value)
    assert str(path) in message
    assert "phantom.imag_size" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("phantom:\n  image_size: 32\n", "phantom.image_size"),
        ("phantom:\n  image_size: 4096\n", "phantom.image_size"),
        ("phantom:\n  oblique_share: 1.5\n", "phantom.oblique_share"),
        ("phantom:\n  photons_per_pixel: 0\n", "phantom.photons_per_pixel"),
        ("phantom:\n  image_size: big\n", "phantom.image_size"),
        ("phantom:\n  bits_stored: 8\n", "bits_stored"),
    ],
)
def test_invalid_value_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = _yaml(tmp_path, text)

    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: ") as err:
        load_config(path, PhantomConfig, "phantom")

    assert field in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("phantom: [1, 2]\n", "expected a mapping"),
        ("- a\n- b\n", "expected a mapping"),
        ("phantom: {image_size: [\n", "cannot read YAML"),
    ],
)
def test_malformed_files_raise_config_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = _yaml(tmp_path, text)

    with pytest.raises(ConfigError, match=fragment) as err:
        load_config(path, PhantomConfig, "phantom")

    assert str(path) in str(err.value)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match=r"absent\.yaml"):
        load_config(path, PhantomConfig, "phantom")


def test_config_is_strict_and_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        PhantomConfig(image_sise=128)
    config = PhantomConfig()
    with pytest.raises(pydantic.ValidationError):
        config.image_size = 64
    assert issubclass(ConfigError, ValueError)


def test_repository_phantom_config_is_valid() -> None:
    path = Path(__file__).resolve().parents[1] / "configs" / "phantom.yaml"
    if not path.exists():
        pytest.skip("no configs/phantom.yaml in this checkout")

    config = load_config(path, PhantomConfig, "phantom")

    assert 64 <= config.image_size <= 2048
