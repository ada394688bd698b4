"""The trainable part of the latent diffusion model: prompt encoder + UNet as one module."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from angiosynth.models.text_encoder import TextEncoder


class Denoiser(nn.Module):
    """Predicts the noise in latents given the prompt tokens (one module, so that DDP, EMA and
    checkpoints treat UNet and text encoder together).

    Args:
        unet: UNet2DConditionModel whose cross_attention_dim is the text encoder's width.
        text_encoder: the prompt encoder.
    """

    def __init__(self, unet: UNet2DConditionModel, text_encoder: TextEncoder) -> None:
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Noise prediction.

        Args:
            latents: (B, C, h, w) noisy latents.
            timesteps: (B,) integer timesteps.
            input_ids: (B, L) prompt token ids.
            attention_mask: (B, L) bool, True at real tokens.

        Returns:
            (B, C, h, w) predicted noise.
        """
        context = self.text_encoder(input_ids, attention_mask)
        return self.unet(
            latents, timesteps, encoder_hidden_states=context,
            encoder_attention_mask=attention_mask.to(latents.dtype),
        ).sample  # fmt: skip
