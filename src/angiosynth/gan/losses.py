"""Losses and the image pool of the translation GANs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lsgan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN's least-squares loss: mean (prediction - 1)^2 for real, prediction^2 for fake."""
    prediction = prediction.float()
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """CycleGAN's discriminator objective: 0.5 (LSGAN(real, 1) + LSGAN(fake, 0))."""
    return 0.5 * (lsgan_loss(real, True) + lsgan_loss(fake, False))


def patch_nce_loss(
    queries: torch.Tensor, keys: torch.Tensor, batch: int, temperature: float
) -> torch.Tensor:
    """CUT's PatchNCE: each query patch must pick its own key among the keys of its image.

    Args:
        queries: (B * P, D) embeddings of output patches (L2-normalised).
        keys: (B * P, D) embeddings of the input patches at the same positions (detached here).
        batch: B; negatives are the other P - 1 patches of the same image.
        temperature: softmax temperature (CUT: 0.07).

    Returns:
        The mean cross-entropy over the B * P queries.
    """
    keys = keys.detach()
    q = queries.float().view(batch, -1, queries.shape[-1])  # (B, P, D)
    k = keys.float().view(batch, -1, keys.shape[-1])
    positive = (q * k).sum(-1, keepdim=True)  # (B, P, 1)
    negative = torch.bmm(q, k.transpose(1, 2))  # (B, P, P)
    eye = torch.eye(q.shape[1], dtype=torch.bool, device=q.device)
    negative = negative.masked_fill(eye, -10.0)  # a patch is not its own negative
    logits = torch.cat([positive, negative], dim=-1).flatten(0, 1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


class ImagePool(nn.Module):
    """CycleGAN's history of generated images: the discriminator sees a mix of the newest fakes
    and earlier ones (Shrivastava et al. 2017).

    The stored images are buffers, so a checkpoint keeps the pool and a resumed run draws
    what an uninterrupted one would. Each process keeps its own pool.

    Args:
        size: how many images it holds (0: no pool, queries return their input).
        shape: (C, H, W) of the images.
    """

    def __init__(self, size: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def query(self, fakes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) new fakes -> (B, C, H, W) images for the discriminator: while the pool
        fills, the new ones (stored); then for each, with probability 1/2 a stored one (replaced
        by the new one), else the new one."""
        if self.size == 0:
            return fakes
        out = []
        for image in fakes.detach():
            filled = int(self.filled)
            if filled < self.size:
                self.images[filled] = image.to(self.images)
                self.filled += 1
                out.append(image)
                continue
            if torch.rand((), generator=generator).item() < 0.5:
                slot = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[slot].clone().to(image))
                self.images[slot] = image.to(self.images)
            else:
                out.append(image)
        return torch.stack(out)
