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


# --- latent diffusion configurations ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_config_has_the_papers_parameter_counts() -> None:
    import torch

    from angiosynth.config import LDMConfig
    from angiosynth.models.autoencoder import build_vae
    from angiosynth.models.text_encoder import PromptTokenizer, TextEncoder
    from angiosynth.models.unet import build_unet

    config = load_config(ROOT / "configs" / "paper.yaml", LDMConfig)
    assert (config.train_ldm.batch_size, config.train_ldm.lr) == (96, 5e-5)
    assert (config.train_vae.batch_size, config.train_vae.lr) == (20, 2e-5)
    assert (config.diffusion.beta_start, config.diffusion.beta_end) == (0.0015, 0.0195)
    assert config.diffusion.num_train_timesteps == 1000
    with torch.device("meta"):
        vae = build_vae(config.vae, config.data.image_size)
        unet = build_unet(config.unet, 3, config.latent_size, config.text_encoder.width)
        text = TextEncoder(PromptTokenizer.from_template().vocab_size, 32, width=512, layers=4)

    assert round(_parameters(vae) / 1e6, 1) == 55.3
    assert round(_parameters(unet) / 1e6, 1) == 499.6
    assert config.latent_size == 64 and config.vae.downsampling == 4
    assert unet.config.attention_head_dim == (7, 14, 28, 28)  # heads: 32 channels each
    assert 12e6 < _parameters(text) < 13e6


def test_tiny_config_scales_the_same_pipeline_down() -> None:
    from angiosynth.config import LDMConfig

    tiny = load_config(ROOT / "configs" / "tiny.yaml", LDMConfig)
    assert tiny.data.image_size == 64 and tiny.latent_size == 16
    assert tiny.unet.block_out_channels == (32, 64, 64)
    assert tiny.diffusion == LDMConfig().diffusion


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unet:\n  channels: [1]\n", r"unet\.channels: Extra inputs are not permitted"),
        ("train_ldm:\n  lr: -1\n", r"train_ldm\.lr: Input should be greater than 0"),
        ("data:\n  image_size: 100\n", r"image_size 100 must be divisible by 32"),
        ("sample:\n  sampler: euler\n", r"sampler must be one of ddpm, ddim, dpmpp"),
        ("unet:\n  attention_head_dim: [7, 14]\n", r"attention_head_dim needs 4 entries"),
        ("vae:\n  norm_num_groups: 48\n", r"vae: 128 channels are not divisible by"),
        ("text_encoder:\n  heads: 5\n", r"width 512 is not divisible by heads 5"),
        ("diffusion:\n  beta_schedule: cosine\n", r"beta_schedule must be scaled_linear"),
    ],
)
def test_ldm_config_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    from angiosynth.config import LDMConfig

    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path, LDMConfig)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
