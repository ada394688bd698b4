"""The vessel segmenter of CAS-GAN: a UNet that maps an angiogram to vessel logits.

After Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation" (MICCAI 2015): a contracting path of levels, each two 3 x 3 convolutions with a
ReLU and a 2 x 2 max-pool to the next, twice as wide; an expanding path that doubles the
resolution with a 2 x 2 transposed convolution ("up-convolution") halving the width,
concatenates the contracting path's features of that level and applies two 3 x 3 convolutions;
a 1 x 1 convolution to the output. Differences from the paper: padded convolutions (the output
has the input's size, no tiling), GroupNorm after every 3 x 3 convolution, and one logit channel
(vessel or not) instead of two softmax classes.

GroupNorm and no dropout make the network behave the same in train and eval mode, so CAS-GAN
can run it frozen inside its training step and back-propagate through it.
"""

from __future__ import annotations

import torch
from torch import nn


def _double_conv(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """(B, in, H, W) -> (B, out, H, W): two 3 x 3 convolutions, each with GroupNorm and ReLU."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers += [
            nn.Conv2d(c_in, out_channels, 3, padding=1),
            nn.GroupNorm(min(groups, out_channels), out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class VesselUNet(nn.Module):
    """UNet from one image channel to one vessel logit per pixel (module docstring).

    Args:
        channels: width of each level, from the full resolution down (the deepest is the
            bottleneck); len(channels) - 1 poolings.
        groups: GroupNorm groups, min(groups, width) per level; each width must be divisible.

    Attributes:
        factor: 2 ** (len(channels) - 1); image sides must be multiples of it.
    """

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512), groups: int = 8):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"VesselUNet needs two or more levels, got channels {channels}")
        for c in channels:
            if c < 1 or c % min(groups, c):
                raise ValueError(f"VesselUNet: width {c} is not divisible by groups {groups}")
        self.channels, self.groups = channels, groups
        self.factor = 2 ** (len(channels) - 1)
        widths = (1, *channels)
        self.down = nn.ModuleList(
            _double_conv(widths[i], widths[i + 1], groups) for i in range(len(channels))
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(channels[i + 1], channels[i], 2, stride=2)
            for i in reversed(range(len(channels) - 1))
        )
        self.merge = nn.ModuleList(
            _double_conv(2 * channels[i], channels[i], groups)
            for i in reversed(range(len(channels) - 1))
        )
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vessel logits.

        Args:
            x: (B, 1, H, W) images in [-1, 1], H and W divisible by `factor`.

        Returns:
            (B, 1, H, W) logits (sigmoid: vessel probability).

        Raises:
            ValueError: not one channel, or a side not divisible by `factor` (names the size).
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"VesselUNet takes (B, 1, H, W) images, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f"VesselUNet: image size {h} x {w} is not divisible by {self.factor} "
                f"(2 ** {len(self.channels) - 1} poolings); pad or crop it"
            )
        skips = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)
