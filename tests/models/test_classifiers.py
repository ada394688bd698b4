"""The arterial-phase classifier network."""

from __future__ import annotations

import torch

from angiosynth.models.classifiers import PHASE_ARCHITECTURE, phase_classifier


def test_phase_classifier_takes_one_channel_and_gives_one_logit() -> None:
    torch.manual_seed(0)
    model = phase_classifier().eval()

    with torch.no_grad():
        logits = model(torch.rand(2, 1, 128, 128))

    assert model.conv1.in_channels == 1
    assert logits.shape == (2, 1)
    assert torch.isfinite(logits).all()


def test_phase_classifier_is_a_resnet18_with_random_weights() -> None:
    torch.manual_seed(0)
    first = phase_classifier()
    torch.manual_seed(1)
    second = phase_classifier()

    n_params = sum(p.numel() for p in first.parameters())
    # torchvision's ResNet-18: 11.69 M with a 3-channel stem and 1000 classes
    assert 11.1e6 < n_params < 11.2e6
    assert PHASE_ARCHITECTURE["in_channels"] == 1 and PHASE_ARCHITECTURE["num_classes"] == 1
    assert not torch.equal(first.conv1.weight, second.conv1.weight)
