"""The denoising UNet (diffusers UNet2DConditionModel) with cross-attention to prompt tokens."""

from __future__ import annotations

from diffusers import UNet2DConditionModel

from angiosynth.config import UNetConfig


def build_unet(
    config: UNetConfig, latent_channels: int, latent_size: int, context_width: int
) -> UNet2DConditionModel:
    """The UNet: noisy latents (B, C, h, w), timesteps (B,) and text tokens (B, L, context_width)
    -> predicted noise (B, C, h, w). The paper's configuration has 499.6 M parameters.

    `attention_head_dim` of `config` is passed through unchanged: diffusers reads it as the number
    of heads per level (SPEC.md "Models").
    """
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=tuple(config.down_block_types),
        up_block_types=tuple(config.up_block_types),
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        attention_head_dim=tuple(config.attention_head_dim),
        transformer_layers_per_block=config.transformer_layers_per_block,
        cross_attention_dim=context_width,
        norm_num_groups=config.norm_num_groups,
    )
