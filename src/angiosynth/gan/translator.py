"""The trained x -> y network on disk, and running it on whole frames.

RUN/generator/ holds model.safetensors (the weights by name) and config.json: the method, the
generator's architecture and the data settings it was trained with. Frames of any size are
translated whole: the networks are fully convolutional, so a frame is padded by reflection to
a multiple of 2 ** n_downsampling, translated and cropped back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from angiosynth.config import CASGANConfig, GeneratorConfig, TranslateConfig
from angiosynth.errors import AngiosynthError
from angiosynth.gan.frames import run_on_frames
from angiosynth.gan.network_files import load_network
from angiosynth.models.gan import AttentionGenerator, CASGANGenerator, ResnetGenerator
from angiosynth.runfiles import (
    MODEL_CONFIG_FILE,
    MODEL_FILE,
    save_tensors_atomic,
    write_json_atomic,
)

GENERATOR_DIR = "generator"
#: The network each method translates with (the others use the ResNet generator).
ARCHITECTURES = {"attentiongan": "attention", "casgan": "casgan"}


class TranslatorFileError(AngiosynthError, ValueError):
    """A translation run has no usable generator (names the folder and the reason)."""


def save_translator(network: nn.Module, method: str, config: TranslateConfig, folder: Path) -> None:
    """Writes `network` (the x -> y generator) and what rebuilds it into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_tensors_atomic(tensors, folder / MODEL_FILE, metadata={"format": "pt"})
    write_json_atomic(folder / MODEL_CONFIG_FILE, {
        "method": method,
        "architecture": ARCHITECTURES.get(method, "resnet"),
        "generator": config.generator.model_dump(mode="json"),
        "casgan": config.casgan.model_dump(mode="json"),
        "data": config.data.model_dump(mode="json"),
    })  # fmt: skip


def build_translator(settings: dict) -> nn.Module:
    """The (untrained) network a generator config.json describes."""
    g = GeneratorConfig.model_validate(settings["generator"])
    if settings["architecture"] == "casgan":
        c = CASGANConfig.model_validate(settings["casgan"])
        return CASGANGenerator(g.ngf, c.encoder_blocks, c.predictor_blocks, g.n_downsampling,
                               c.vsgg)  # fmt: skip
    if settings["architecture"] == "attention":
        return AttentionGenerator(g.ngf, g.n_blocks, g.n_downsampling, g.n_content)
    return ResnetGenerator(g.ngf, g.n_blocks, g.n_downsampling)


def load_translator(run: Path) -> tuple[nn.Module, dict]:
    """The x -> y network of a run (RUN or RUN/generator), in eval mode, and its config.json.

    Raises:
        TranslatorFileError: the folder has no generator, or its files do not fit.
    """
    return load_network(
        run,
        GENERATOR_DIR,
        build_translator,
        TranslatorFileError,
        "generator",
        "angiosynth train translate",
    )


def resize_to(images: torch.Tensor, side: int | None) -> torch.Tensor:
    """(n, 1, H, W) images with their shorter side resized to `side` (None: unchanged)."""
    if side is None or min(images.shape[-2:]) == side:
        return images
    scale = side / min(images.shape[-2:])
    size = (round(images.shape[-2] * scale), round(images.shape[-1] * scale))
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def translate_frame(network: nn.Module, frame: np.ndarray, image_size: int | None) -> np.ndarray:
    """(H, W) frame in [0, 1] -> its (H, W) translation: at the scale the network was trained
    at (shorter side `image_size`, None: as it is), then back to the frame's size."""
    image = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None, None]
    scaled = resize_to(image, image_size)
    out = torch.from_numpy(translate_batch(network, scaled[:, 0].numpy()))[:, None]
    if out.shape[-2:] != image.shape[-2:]:
        out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", antialias=True)
    return out[0, 0].clamp(0, 1).numpy()


def translate_batch(network: nn.Module, frames: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """(n, H, W) frames in [0, 1] -> (n, H, W) translations in [0, 1], each frame whole."""

    def call(x: torch.Tensor) -> torch.Tensor:
        return (network(x).clamp(-1, 1) + 1) / 2

    return run_on_frames(network, call, frames, 2**network.n_downsampling, batch_size)


def attention_batch(network: nn.Module, frames: np.ndarray, batch_size: int = 8):
    """(n, H, W) frames in [0, 1] -> (n, H, W) attention A in [0, 1] of CAS-GAN's VSGG (where
    the output is drawn instead of passing the input), or None for a network without one."""
    if getattr(network, "attention", None) is None or not hasattr(network, "parts"):
        return None
    return run_on_frames(network, lambda x: network.parts(x)[1], frames,
                         2**network.n_downsampling, batch_size)  # fmt: skip
