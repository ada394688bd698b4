"""Losses of the autoencoder: perceptual distance, KL term, PatchGAN hinge losses."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import nn

#: torchvision's ImageNet backbones, which `lpips` loads through the torch hub cache.
BACKBONE_WEIGHTS = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def backbone_cached(net: str) -> bool:
    """Whether torchvision's ImageNet weights of `net` are in the torch hub cache (no download)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_WEIGHTS[net]).is_file()


def resolve_perceptual(kind: str, net: str = "vgg") -> str:
    """The perceptual loss a run uses: "auto" is "lpips" when the backbone's ImageNet weights are
    cached, else "stlpips" (which ships its own)."""
    if kind == "auto":
        return "lpips" if backbone_cached(net) else "stlpips"
    if kind == "lpips" and not backbone_cached(net):
        raise FileNotFoundError(
            f"perceptual: lpips needs {BACKBONE_WEIGHTS[net]} in {torch.hub.get_dir()}/checkpoints"
            " (angiosynth never downloads weights); use perceptual: stlpips or auto"
        )
    return kind


class PerceptualLoss(nn.Module):
    """Frozen LPIPS-VGG distance between (B, 1, H, W) images in [-1, 1] -> (B,).

    Args:
        kind: "lpips" (Zhang et al.) or "stlpips" (shift-tolerant LPIPS, whose backbone
            weights ship with the `stlpips-pytorch` package).
        net: backbone, "vgg" (the paper's choice) or "alex" (about 10x cheaper on a CPU).
    """

    def __init__(self, kind: str, net: str = "vgg") -> None:
        super().__init__()
        with contextlib.redirect_stdout(io.StringIO()):  # both packages print on load
            if kind == "lpips":
                import lpips

                self.net = lpips.LPIPS(net=net, verbose=False)
            elif kind == "stlpips":
                from stlpips_pytorch import stlpips

                self.net = stlpips.LPIPS(net=net, variant="shift_tolerant")
            else:
                raise ValueError(f"unknown perceptual loss {kind!r}")
        self.kind, self.backbone = kind, net
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Stays in eval mode (frozen statistics)."""
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)).flatten()


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over latent elements: (B, C, h, w) -> (B,)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """PatchGAN hinge loss of the discriminator's logits on real and generated images."""
    return 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())


def hinge_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The autoencoder's adversarial loss: -D(x_hat), averaged."""
    return -fake.mean()
