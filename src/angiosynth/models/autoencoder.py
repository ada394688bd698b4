"""The image autoencoder (diffusers AutoencoderKL) and the optional PatchGAN discriminator."""

from __future__ import annotations

from diffusers import AutoencoderKL

from angiosynth.config import VAEConfig


def build_vae(config: VAEConfig, image_size: int) -> AutoencoderKL:
    """A 1-channel AutoencoderKL: (B, 1, H, W) in [-1, 1] <-> latents (B, C, H / f, W / f).

    No attention except in the mid block, `double_z` (mean and log-variance), as LDM's kl-f4.
    The paper's configuration has 55.3 M parameters.
    """
    levels = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=image_size,
        scaling_factor=1.0,
    )
