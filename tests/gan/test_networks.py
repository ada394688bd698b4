"""The translation networks: shapes, the attention composite, the patch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from angiosynth.gan.translator import translate_batch
from angiosynth.models.gan import (
    AttentionGenerator,
    PatchDiscriminator,
    PatchSampler,
    ResnetGenerator,
    init_weights,
)


@pytest.mark.parametrize("side", [64, 72, 96])
def test_resnet_generator_keeps_the_shape_and_range(side):
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=8, n_blocks=2)
    out = net(torch.rand(2, 1, side, side) * 2 - 1)
    assert out.shape == (2, 1, side, side)
    assert out.abs().max() <= 1


def test_encoder_features_follow_the_layer_numbering():
    net = ResnetGenerator(ngf=8, n_blocks=5, n_downsampling=2)
    feats = net.features(torch.zeros(1, 1, 64, 64), (0, 4, 7, 10, 14))
    # padded input, the two downsampling convolutions, the first and fifth residual block
    assert [tuple(f.shape[1:]) for f in feats] == [
        (1, 70, 70), (16, 32, 32), (32, 16, 16), (32, 16, 16), (32, 16, 16),
    ]  # fmt: skip
    assert net.encoder_length == 15


def test_patch_discriminator_is_the_70px_patchgan():
    d = PatchDiscriminator(64, 3, norm="instance")
    assert d(torch.zeros(1, 1, 256, 256)).shape == (1, 1, 30, 30)
    channels = [m.out_channels for m in d if isinstance(m, torch.nn.Conv2d)]
    assert channels == [64, 128, 256, 512, 1]
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(norm="group")


def test_attention_masks_sum_to_one_and_background_returns_the_input():
    torch.manual_seed(0)
    net = AttentionGenerator(ngf=8, n_blocks=1, n_content=3)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    out, content, attention = net.parts(x)
    assert out.shape == x.shape and content.shape == (2, 3, 32, 32)
    assert attention.shape == (2, 4, 32, 32)
    torch.testing.assert_close(attention.sum(1), torch.ones(2, 32, 32))
    head = net.attention[-1]  # the 1 x 1 convolution to the masks
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-50.0, -50.0, -50.0, 50.0]))
    torch.testing.assert_close(net(x), x)  # all attention on the input: output = input


def test_patch_sampler_reuses_positions_and_normalises():
    sampler = PatchSampler((4, 8), width=16)
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    gen = torch.Generator().manual_seed(0)
    out, positions = sampler(feats, 20, generator=gen)
    assert [o.shape for o in out] == [(40, 16), (32, 16)]  # 4 x 4 has only 16 positions
    torch.testing.assert_close(out[0].norm(dim=1), torch.ones(40))
    again, same = sampler(feats, 20, positions)
    assert all(torch.equal(a, b) for a, b in zip(out, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(positions, same, strict=True))


def test_init_weights_normal_has_the_gain_as_std():
    torch.manual_seed(0)
    net = init_weights(ResnetGenerator(ngf=32, n_blocks=2), "normal", 0.02)
    weights = torch.cat([p.flatten() for n, p in net.named_parameters() if "weight" in n])
    assert abs(weights.std().item() - 0.02) < 0.001
    assert all(p.abs().sum() == 0 for n, p in net.named_parameters() if "bias" in n)


def test_whole_frames_of_any_size_are_translated():
    """A network trained on 64 px crops translates a 512 px frame and odd sizes whole."""
    torch.manual_seed(0)
    net = ResnetGenerator(ngf=4, n_blocks=1)
    frames = np.random.default_rng(0).uniform(0, 1, (1, 512, 512)).astype(np.float32)
    out = translate_batch(net, frames)
    assert out.shape == (1, 512, 512) and out.min() >= 0 and out.max() <= 1
    odd = translate_batch(net, frames[:, :130, :129])
    assert odd.shape == (1, 130, 129)
