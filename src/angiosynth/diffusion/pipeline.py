"""The latent pipeline: prompt -> denoised latents -> decoded DSA frames.

`LatentDiffusion.load(RUN)` reads a run of `angiosynth train ldm` (EMA UNet, text encoder with
its vocabulary, autoencoder with its scale factor, the DDPM schedule). `sample` draws one image
per (prompt, seed): its starting noise and every stochastic sampler step come from a generator
seeded by that image's seed alone, so an image does not depend on the batch it was drawn in or
on how sampling was sharded over processes.

Classifier-free guidance with weight g: eps = eps(empty) + g (eps(prompt) - eps(empty)); g = 1
is the conditional model alone (one network evaluation per step instead of two).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from angiosynth.config import LDMConfig
from angiosynth.data.diffusion import to_unit_range
from angiosynth.diffusion.schedulers import sampling_scheduler
from angiosynth.errors import InputNotFoundError
from angiosynth.models.denoiser import Denoiser
from angiosynth.models.text_encoder import PromptTokenizer, load_text_encoder
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import CONFIG_FILE, MODEL_CONFIG_FILE

RUN_FILES = (
    CONFIG_FILE,
    f"unet/{MODEL_CONFIG_FILE}",
    "text_encoder/text_encoder.json",
    f"vae/{MODEL_CONFIG_FILE}",
)


class ModelRunError(InputNotFoundError):
    """A directory that is not a finished `train ldm` run."""


@dataclass
class LatentDiffusion:
    """A trained latent diffusion model ready to sample.

    Attributes:
        denoiser: EMA UNet + text encoder.
        tokenizer: the closed prompt vocabulary.
        vae: the autoencoder (its config holds `scaling_factor`).
        config: the run's configuration.
        model_hash: first 16 hex digits of the SHA-256 of the weights files.
        device: where the networks live.
    """

    denoiser: Denoiser
    tokenizer: PromptTokenizer
    vae: AutoencoderKL
    config: LDMConfig
    model_hash: str
    device: torch.device

    @classmethod
    def load(cls, run: Path, device: str | torch.device = "cpu") -> LatentDiffusion:
        """Loads RUN (raises ModelRunError naming the first missing file)."""
        run = Path(run)
        for name in RUN_FILES:
            if not (run / name).exists():
                raise ModelRunError(f"{run}: not a trained model (missing {name})")
        device = torch.device(device)
        resolved = yaml.safe_load((run / CONFIG_FILE).read_text())
        config = LDMConfig.model_validate({k: resolved[k] for k in LDMConfig.model_fields})
        text_encoder, tokenizer = load_text_encoder(run / "text_encoder", device)
        unet = UNet2DConditionModel.from_pretrained(run / "unet").to(device).eval()
        vae = AutoencoderKL.from_pretrained(run / "vae").to(device).eval()
        denoiser = Denoiser(unet, text_encoder).eval().requires_grad_(False)
        return cls(denoiser, tokenizer, vae.requires_grad_(False), config, model_hash(run), device)

    @property
    def scale_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raises UnknownWordError (naming the word) for a prompt outside the vocabulary."""
        for prompt in dict.fromkeys(prompts):
            self.tokenizer.token_ids(prompt)

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        sampler: str = "ddpm",
        steps: int = 1000,
        guidance: float = 1.0,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Generates one image per (prompt, seed).

        Returns:
            (N, 1, H, W) float32 images in [0, 1] on the CPU.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        self.check_prompts(prompts)
        scheduler = sampling_scheduler(sampler, self.config.diffusion)
        scheduler.set_timesteps(steps, device=self.device)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        shape = (len(prompts), self.vae.config.latent_channels, *([self.config.latent_size] * 2))
        latents = randn_tensor(shape, generator=generators, device=torch.device("cpu"))
        latents = latents.to(self.device) * scheduler.init_noise_sigma
        context = self._tokens(prompts, guidance)
        timesteps = scheduler.timesteps
        for t in tracked(timesteps, len(timesteps), sampler, progress):
            eps = self._noise(scheduler.scale_model_input(latents, t), t, context, guidance)
            latents = scheduler.step(eps, t, latents, generator=generators).prev_sample
        return self.decode(latents)

    def _tokens(self, prompts: Sequence[str], guidance: float) -> tuple[torch.Tensor, ...]:
        ids, mask = self.tokenizer.encode(list(prompts))
        if guidance != 1.0:
            empty_ids, empty_mask = self.tokenizer.encode([""] * len(prompts))
            ids, mask = torch.cat([empty_ids, ids]), torch.cat([empty_mask, mask])
        return ids.to(self.device), mask.to(self.device)

    def _noise(self, latents, t, context, guidance: float) -> torch.Tensor:
        """(N, C, h, w) guided noise prediction at timestep t."""
        ids, mask = context
        if guidance == 1.0:
            return self.denoiser(latents, t.expand(len(latents)), ids, mask)
        doubled = torch.cat([latents, latents])
        uncond, cond = self.denoiser(doubled, t.expand(len(doubled)), ids, mask).chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) scaled latents -> (N, 1, H, W) images in [0, 1] on the CPU."""
        images = self.vae.decode(latents / self.scale_factor).sample
        return to_unit_range(images.float()).cpu()


def model_hash(run: Path) -> str:
    """First 16 hex digits of the SHA-256 over the run's weights files (UNet, text encoder, VAE)."""
    digest = hashlib.sha256()
    for sub in ("unet", "text_encoder", "vae"):
        for path in sorted((Path(run) / sub).glob("*.safetensors")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
