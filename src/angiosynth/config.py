"""Typed configuration models and YAML loading.

Every model forbids unknown keys, so a misspelt option is an error that names the field instead of
being silently ignored. This module imports nothing else from angiosynth.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file and field."""


class StrictModel(BaseModel):
    """Base for configuration models: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PhantomConfig(StrictModel):
    """How the DSA phantom simulates and writes an archive.

    Attributes:
        image_size: detector pixels per side (square frames).
        field_of_view_mm: detector field of view at the isocentre.
        bits_stored: DICOM Bits Stored of the native frames.
        oblique_share: probability that a run uses oblique (non-canonical) C-arm angles.
        annotate_share: share of kept-circulation series given an expert-style annotation.
        photons_per_pixel: unattenuated detector counts per pixel (sets quantum noise).
        detector_blur_mm: standard deviation of the detector's Gaussian blur.
        motion_px_per_frame: standard deviation of patient motion per frame (random walk).
    """

    image_size: int = Field(512, ge=64, le=2048)
    field_of_view_mm: float = Field(230.0, gt=50, le=500)
    bits_stored: int = 12
    oblique_share: float = Field(0.5, ge=0, le=1)
    annotate_share: float = Field(0.3, ge=0, le=1)
    photons_per_pixel: float = Field(6.0e5, gt=0)
    detector_blur_mm: float = Field(0.3, ge=0)
    motion_px_per_frame: float = Field(0.06, ge=0)

    @model_validator(mode="after")
    def _check_bits(self) -> PhantomConfig:
        if self.bits_stored not in (10, 12, 16):
            raise ValueError(f"bits_stored must be 10, 12 or 16, got {self.bits_stored}")
        return self

    @property
    def pixel_spacing_mm(self) -> float:
        """Pixel spacing at the isocentre."""
        return self.field_of_view_mm / self.image_size


Model = TypeVar("Model", bound=StrictModel)


def load_config(path: Path, model: type[Model], section: str | None = None) -> Model:
    """Loads and validates a YAML file (or one top-level section of it) into `model`.

    Raises:
        ConfigError: with a one-line message naming the file and the offending field.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"{path}: cannot read YAML ({err.__class__.__name__}: {detail})") from err
    if section is not None and isinstance(data, dict):
        data = data.get(section) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in ((section,) if section else ()) + tuple(first["loc"]))
        raise ConfigError(f"{path}: {where or 'config'}: {first['msg']}") from err
