"""The image autoencoder (diffusers AutoencoderKL) and the optional PatchGAN discriminator."""

from __future__ import annotations

from diffusers import AutoencoderKL
from torch import nn

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


class PatchDiscriminator(nn.Sequential):
    """PatchGAN discriminator (pix2pix's 70 x 70 design with `layers` stride-2 stages).

    (B, 1, H, W) -> (B, 1, H', W') real/fake logits, one per overlapping patch.
    """

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        blocks: list[nn.Module] = [
            nn.Conv2d(1, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        super().__init__(*blocks)
