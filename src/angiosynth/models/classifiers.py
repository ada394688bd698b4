"""Frame classifiers.

The arterial-phase classifier of the paper (§2.2, §4.2) is a ResNet-18 trained from scratch on
single-channel 128 x 128 DSA frames in [0, 1], with one logit out (arterial vs not).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

#: Side of the classifier's square input frames (paper §4.2).
PHASE_INPUT_SIZE = 128

#: What `phase_classifier` builds, as recorded in a model's config.json.
PHASE_ARCHITECTURE = {
    "name": "resnet18",
    "library": "torchvision",
    "weights": None,
    "in_channels": 1,
    "num_classes": 1,
    "input_size": PHASE_INPUT_SIZE,
}


def phase_classifier() -> nn.Module:
    """ResNet-18 (torchvision, random init) with a 1-channel stem and a single logit.

    The model maps (N, 1, H, W) frames in [0, 1] to (N, 1) logits; H = W = 128 in the paper.
    The stem keeps torchvision's 7x7 stride-2 convolution, only with one input channel.
    """
    model = resnet18(weights=None, num_classes=1)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
