"""The vessel UNet: shapes, the size check, no train/eval difference, gradients to the input."""

from __future__ import annotations

import pytest
import torch

from angiosynth.models.segmenter import VesselUNet


@pytest.mark.parametrize(("channels", "side"), [((4, 8), 6), ((4, 8, 16), 32), ((8, 8, 8, 8), 48)])
def test_logits_have_the_input_size(channels, side):
    torch.manual_seed(0)
    net = VesselUNet(channels, groups=4)
    assert net.factor == 2 ** (len(channels) - 1)
    out = net(torch.rand(2, 1, side, side + net.factor) * 2 - 1)
    assert out.shape == (2, 1, side, side + net.factor) and out.dtype == torch.float32


def test_the_default_is_ronneberger_sized():
    net = VesselUNet()
    assert net.channels == (64, 128, 256, 512) and net.factor == 8
    norms = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert {m.num_groups for m in norms} == {8} and len(norms) == 4 * 2 + 3 * 2
    # Ronneberger's five levels (64 ... 1024) have 31.0 M weights; four levels 7.7 M
    assert sum(p.numel() for p in VesselUNet((64, 128, 256, 512, 1024)).parameters()) == 31_042_369
    assert sum(p.numel() for p in net.parameters()) == 7_701_825


def test_sizes_not_divisible_by_the_factor_are_refused():
    net = VesselUNet((4, 8, 16), groups=2)
    with pytest.raises(ValueError, match="image size 30 x 32 is not divisible by 4"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="not divisible by groups 4"):
        VesselUNet((6, 12), groups=4)
    with pytest.raises(ValueError, match="two or more levels"):
        VesselUNet((8,))


def test_train_and_eval_mode_give_the_same_logits_and_gradients_reach_the_input():
    torch.manual_seed(0)
    net = VesselUNet((4, 8, 16), groups=2)
    x = (torch.rand(2, 1, 16, 16) * 2 - 1).requires_grad_()
    train_out = net.train()(x)
    eval_out = net.eval()(x)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)
    net.requires_grad_(False)  # frozen, as inside a CAS-GAN step
    eval_out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
