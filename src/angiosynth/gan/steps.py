"""What one generator forward of a translation method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepImages:
    """Images of one generator forward.

    Attributes:
        fakes: per judged domain, the (B, C, H, W) fakes the discriminators see.
        extras: the method's other images, codes and loss terms.
        reals: real inputs of judged domains that are not the step's x or y (CAS-GAN's
            segmentation maps of the real angiograms), detached.
    """

    fakes: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor]
    reals: dict[str, torch.Tensor] = field(default_factory=dict)
