"""CAS-GAN: the composite of VSGG, the terms of its objective on known inputs, the eight
ablation cells, and what is frozen or detached."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from angiosynth.config import TranslateConfig
from angiosynth.errors import OptionError
from angiosynth.gan.casgan import CASGANGenerators, casgan_terms
from angiosynth.gan.methods import TranslationMethod, judge
from angiosynth.gan.steps import StepImages
from angiosynth.gan.translator import (
    attention_batch,
    load_translator,
    save_translator,
    translate_batch,
)
from angiosynth.models.gan import CASGANGenerator, ResnetGenerator

CELLS = list(itertools.product((False, True), repeat=3))


def _config(drl=True, vsgg=True, vsgl=True, **casgan) -> TranslateConfig:
    return TranslateConfig.model_validate({
        "data": {"crop_size": 16},
        "generator": {"ngf": 4, "n_downsampling": 2},
        "discriminator": {"ndf": 4, "n_layers": 2},
        "casgan": {"drl": drl, "vsgg": vsgg, "vsgl": vsgl, "encoder_blocks": 1,
                   "predictor_blocks": 1, **casgan},
    })  # fmt: skip


def _segmenter() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1))


def _images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, 16, 16, generator=gen) * 2 - 1, torch.rand(2, 1, 16, 16, generator=gen)


class FixedLogits(nn.Module):
    """Attention logits -1e4 on the left half, +1e4 on the right (sigmoid: exactly 0 and 1)."""

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        side = code.shape[-1] * 4
        logits = torch.full((len(code), 1, side, side), 1e4)
        logits[..., : side // 2] = -1e4
        return logits


def test_vsgg_passes_the_input_where_the_attention_is_zero():
    net = CASGANGenerator(ngf=4, encoder_blocks=1, predictor_blocks=1, n_downsampling=2)
    net.attention = FixedLogits()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        out = net(x)
        content = net.content(net.predictor(net.encoder(x)))
    assert torch.equal(out[..., :8], x[..., :8])  # A = 0: the input, bit for bit
    assert torch.equal(out[..., 8:], content[..., 8:])  # A = 1: the content head
    assert not torch.equal(out[..., 8:], x[..., 8:])


def test_without_vsgg_the_content_head_draws_the_whole_image():
    net = CASGANGenerator(ngf=4, encoder_blocks=1, predictor_blocks=1, vsgg=False)
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    assert net.attention is None
    with torch.no_grad():
        assert torch.equal(net(x), net.content(net.predictor(net.encoder(x))))


def test_the_attention_starts_nearly_closed_so_the_output_starts_near_the_input():
    generators = CASGANGenerators(_config(vsgl=False))
    x, y = _images()
    with torch.no_grad():
        attention = generators(x, y).extras["attention"]
    assert torch.equal(generators.g_xy.attention[-1].bias, torch.tensor([-3.0]))
    assert abs(attention.mean().item() - torch.sigmoid(torch.tensor(-3.0)).item()) < 0.01


@pytest.mark.parametrize(("drl", "vsgg", "vsgl"), CELLS)
def test_each_ablation_cell_builds_and_takes_a_step(drl, vsgg, vsgl):
    config = _config(drl, vsgg, vsgl)
    method = TranslationMethod("casgan", config, _segmenter() if vsgl else None)
    assert method.domains == (("x", "y", "sem") if vsgl else ("x", "y"))
    assert (method.generators.vessel_encoder is not None) == drl
    assert (method.generators.g_xy.attention is not None) == vsgg
    x, y = _images()
    images = method.generators(x, y)
    assert set(images.reals) == ({"sem"} if vsgl else set())
    loss, parts = method.generator_loss(images, x, y, judge(method.discriminators, images.fakes))
    expected = {"gan_x", "gan_y", "cycle_x", "cycle_y", "identity_x"}
    expected |= {"pred", "latent"} if drl else {"identity_y"}
    expected |= {"gan_sem"} if vsgl else set()
    assert set(parts) == expected and torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in method.generators.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert all(p.grad is None for p in method.discriminators.parameters())  # judged frozen


def test_cells_are_named_by_the_modules_they_switch_on():
    assert _config(False, False, False).casgan.cell == "none"
    assert _config(True, False, True).casgan.cell == "DRL+VSGL"
    assert _config().casgan.cell == "DRL+VSGG+VSGL"


def test_vsgl_needs_a_segmenter():
    with pytest.raises(OptionError, match="--segmenter RUN"):
        CASGANGenerators(_config(vsgl=True))


def test_the_segmenter_stays_frozen_and_passes_gradients_to_the_generator():
    segmenter = _segmenter()
    before = [p.clone() for p in segmenter.parameters()]
    generators = CASGANGenerators(_config(), segmenter)
    generators.train()
    x, y = _images()
    images = generators(x, y)
    assert not images.reals["sem"].requires_grad
    torch.testing.assert_close(images.reals["sem"], torch.sigmoid(segmenter(y)) * 2 - 1)
    images.fakes["sem"].mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in segmenter.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, segmenter.parameters(), strict=True))
    assert generators.g_xy.encoder[1].weight.grad.abs().sum() > 0  # through S into y_g
    assert generators.bg_decoder[0].weight.grad is None  # y_g does not depend on D_BG


def test_the_prediction_loss_is_the_l1_between_predicted_and_encoded_vessel_codes():
    generators = CASGANGenerators(_config(vsgl=False))
    x, y = _images()
    images = generators(x, y)
    with torch.no_grad():
        g = generators.g_xy
        expected = (g.predictor(g.encoder(y)) - generators.vessel_encoder(y)).abs().mean()
    torch.testing.assert_close(images.extras["pred"], expected)
    images.extras["pred"].backward(retain_graph=True)
    assert all(p.grad is None for p in generators.vessel_encoder.parameters())  # the target


def test_the_latent_cycle_compares_the_codes_of_the_fakes_with_those_of_the_reals():
    generators = CASGANGenerators(_config(vsgl=False))
    x, y = _images()
    images = generators(x, y)
    g, e_vess = generators.g_xy, generators.vessel_encoder
    with torch.no_grad():
        z_x, z_y = g.encoder(x), g.encoder(y)
        fake_y, fake_x = images.fakes["y"], images.fakes["x"]
        expected = (
            (g.encoder(fake_y) - z_x).abs().mean() + (g.encoder(fake_x) - z_y).abs().mean()
            + (e_vess(fake_y) - g.predictor(z_x)).abs().mean()
        )  # fmt: skip
        torch.testing.assert_close(fake_x, generators.bg_decoder(z_y))
    torch.testing.assert_close(images.extras["latent"], expected)


def test_the_objective_weights_its_terms_on_known_inputs():
    config = _config(lambda_sem=2.0, lambda_pred=3.0, lambda_latent=0.5)
    x = torch.zeros(1, 1, 4, 4)
    y = torch.ones(1, 1, 4, 4)
    extras = {
        "rec_x": x + 0.5,  # cycle_x 0.5
        "rec_y": y - 0.25,  # cycle_y 0.25
        "idt_x": x - 0.1,  # identity_x 0.1
        "pred": torch.tensor(0.2),
        "latent": torch.tensor(0.4),
    }
    parts = {"gan_x": torch.tensor(1.0), "gan_y": torch.tensor(2.0), "gan_sem": torch.tensor(3.0)}
    total = casgan_terms(StepImages({}, extras), x, y, parts, config)
    # 1 + 2 + 2 * 3 + 10 * (0.5 + 0.25) + 10 * 0.5 * 0.1 + 3 * 0.2 + 0.5 * 0.4
    torch.testing.assert_close(total, torch.tensor(17.8))
    torch.testing.assert_close(parts["identity_x"], torch.tensor(0.1))
    extras = {k: v for k, v in extras.items() if k not in ("pred", "latent")}
    extras["idt_y"] = y + 0.3  # without DRL: CycleGAN's identity for y as well
    parts = {"gan_x": torch.tensor(1.0), "gan_y": torch.tensor(2.0)}
    total = casgan_terms(StepImages({}, extras), x, y, parts, _config(drl=False, vsgl=False))
    # 1 + 2 + 10 * 0.75 + 5 * (0.1 + 0.3)
    torch.testing.assert_close(total, torch.tensor(12.5))


def test_the_translator_round_trips_and_shows_its_attention(tmp_path):
    config = _config(vsgl=False)
    network = CASGANGenerators(config).translator
    save_translator(network, "casgan", config, tmp_path / "generator")
    loaded, settings = load_translator(tmp_path)
    assert settings["architecture"] == "casgan" and settings["casgan"]["vsgg"]
    frames = np.random.default_rng(0).uniform(0, 1, (2, 30, 34)).astype(np.float32)
    translated = translate_batch(loaded, frames)
    assert translated.shape == frames.shape
    np.testing.assert_array_equal(translated, translate_batch(network, frames))
    attention = attention_batch(loaded, frames)
    assert attention.shape == frames.shape and 0 <= attention.min() <= attention.max() <= 1
    assert attention_batch(ResnetGenerator(ngf=4, n_blocks=1), frames) is None
