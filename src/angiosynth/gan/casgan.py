"""CAS-GAN (seed 002): disentangled, vessel-guided translation of non-contrast X-ray x into
angiograms y. Images are (B, 1, H, W) in [-1, 1].

Networks (`CASGANGenerators`): the x -> y network `models.gan.CASGANGenerator` (background
encoder E_BG, predictor M, attention and content heads), a background decoder D_BG for the
reverse direction, x_g = D_BG(E_BG(y)), a vessel encoder E_Vess (DRL) and a frozen vessel
segmenter S (VSGL). One step of the generators computes:

- y_g = G(x) from z_x = E_BG(x) through M; x_g = D_BG(z_y) with z_y = E_BG(y);
- image cycle: x_rec = D_BG(E_BG(y_g)); y_rec drawn over x_g from y's own vessel code
  E_Vess(y) with DRL, else G(x_g);
- identity: D_BG(z_x) for x; G(y) for y without DRL (CycleGAN's);
- DRL: L_pred = |M(z_y) - E_Vess(y)| and the latent cycle |E_BG(y_g) - z_x| +
  |E_BG(x_g) - z_y| + |E_Vess(y_g) - M(z_x)|; the codes of the real images are the targets
  (detached), so the encoders cannot shrink their codes to meet a prediction;
- VSGL: the semantic fakes 2 S(y_g) - 1 for D_Sem (gradients flow through the frozen S into
  y_g) and the semantic reals 2 S(y) - 1, both vessel probabilities mapped to [-1, 1].

The generator objective (`casgan_terms`): LSGAN on D_y(y_g) and D_x(x_g), + lambda_sem LSGAN on
D_Sem(S(y_g)), + lambda_cycle (cycles) + lambda_cycle lambda_identity (identities) +
lambda_pred L_pred + lambda_latent (latent cycle). The paper states a log-likelihood GAN loss
for D_Sem; angiosynth uses LSGAN for every discriminator, as its baselines do.
"""

from __future__ import annotations

import torch
from torch import nn

from angiosynth.config import TranslateConfig
from angiosynth.errors import OptionError
from angiosynth.gan.steps import StepImages
from angiosynth.models.gan import CASGANGenerator, init_weights, resnet_decoder, resnet_encoder


def build_casgan_translator(config: TranslateConfig) -> CASGANGenerator:
    """The (untrained) x -> y network of `config`."""
    g, c = config.generator, config.casgan
    return CASGANGenerator(g.ngf, c.encoder_blocks, c.predictor_blocks, g.n_downsampling, c.vsgg)


class CASGANGenerators(nn.Module):
    """Every generator-side network of CAS-GAN, and the images and codes of one step.

    Args:
        config: the run's configuration (its `casgan` section switches DRL, VSGG and VSGL).
        segmenter: the trained vessel segmenter ((B, 1, H, W) in [-1, 1] -> logits), needed
            with VSGL; it is frozen here and kept in the checkpoints with the generators.

    Raises:
        OptionError: VSGL without a segmenter.
    """

    def __init__(self, config: TranslateConfig, segmenter: nn.Module | None = None) -> None:
        super().__init__()
        g, c = config.generator, config.casgan
        if c.vsgl and segmenter is None:
            raise OptionError(
                "CAS-GAN with casgan.vsgl needs a trained vessel segmenter: --segmenter RUN "
                "(`angiosynth train segmenter`), or set casgan.vsgl: false"
            )
        self.g_xy = build_casgan_translator(config)
        self.bg_decoder = nn.Sequential(
            *resnet_decoder(self.g_xy.width, g.n_downsampling, 1, "tanh")
        )
        self.vessel_encoder = (
            nn.Sequential(*resnet_encoder(g.ngf, c.encoder_blocks, g.n_downsampling))
            if c.drl
            else None
        )
        init_weights(self, g.init, g.init_gain)
        if self.g_xy.attention is not None:
            nn.init.constant_(self.g_xy.attention[-1].bias, c.attention_bias)
        self.segmenter = segmenter.requires_grad_(False).eval() if c.vsgl else None

    @property
    def translator(self) -> CASGANGenerator:
        """The x -> y network (what `angiosynth translate` runs)."""
        return self.g_xy

    def train(self, mode: bool = True) -> CASGANGenerators:
        """As nn.Module.train, but the frozen segmenter stays in eval mode."""
        super().train(mode)
        if self.segmenter is not None:
            self.segmenter.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator=None) -> StepImages:
        """Every image and code of a step from (B, 1, H, W) x and y (`generator` is unused)."""
        g = self.g_xy
        z_x, z_y = g.encoder(x), g.encoder(y)
        v_x = g.predictor(z_x)
        fake_y, attention = g.decode(x, v_x)
        fake_x = self.bg_decoder(z_y)
        z_fake_x = g.encoder(fake_x)
        extras = {"rec_x": self.bg_decoder(g.encoder(fake_y)), "idt_x": self.bg_decoder(z_x)}
        if attention is not None:
            extras["attention"] = attention
        if self.vessel_encoder is not None:
            v_y = self.vessel_encoder(y)
            extras["rec_y"] = g.decode(fake_x, v_y)[0]
            extras["pred"] = _l1(g.predictor(z_y), v_y)
            extras["latent"] = (
                _l1(g.encoder(fake_y), z_x) + _l1(z_fake_x, z_y)
                + _l1(self.vessel_encoder(fake_y), v_x)
            )  # fmt: skip
        else:
            extras["rec_y"] = g.decode(fake_x, g.predictor(z_fake_x))[0]
            extras["idt_y"] = g.decode(y, g.predictor(z_y))[0]
        fakes, reals = {"y": fake_y, "x": fake_x}, {}
        if self.segmenter is not None:
            fakes["sem"] = torch.sigmoid(self.segmenter(fake_y)) * 2 - 1
            with torch.no_grad():
                reals["sem"] = torch.sigmoid(self.segmenter(y)) * 2 - 1
        return StepImages(fakes, extras, reals)


def _l1(code: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |code - target| with the target detached."""
    return (code.float() - target.detach().float()).abs().mean()


def casgan_terms(
    images: StepImages, x: torch.Tensor, y: torch.Tensor, parts: dict, config: TranslateConfig
) -> torch.Tensor:
    """CAS-GAN's generator objective (see the module docstring); adds its terms to `parts`.

    Args:
        images: `CASGANGenerators.forward`'s output.
        x, y: the step's real images.
        parts: the GAN terms "gan_x", "gan_y" and, with VSGL, "gan_sem" (LSGAN of the
            discriminators' logits on the fakes).
    """
    c, cycle = config.casgan, config.cycle
    e = images.extras
    parts["cycle_x"] = (e["rec_x"].float() - x).abs().mean()
    parts["cycle_y"] = (e["rec_y"].float() - y).abs().mean()
    parts["identity_x"] = (e["idt_x"].float() - x).abs().mean()
    identity = parts["identity_x"]
    if "idt_y" in e:
        parts["identity_y"] = (e["idt_y"].float() - y).abs().mean()
        identity = identity + parts["identity_y"]
    total = parts["gan_x"] + parts["gan_y"] + c.lambda_sem * parts.get("gan_sem", 0.0)
    total = total + cycle.lambda_cycle * (parts["cycle_x"] + parts["cycle_y"])
    total = total + cycle.lambda_cycle * cycle.lambda_identity * identity
    if "pred" in e:
        parts["pred"], parts["latent"] = e["pred"], e["latent"]
        total = total + c.lambda_pred * parts["pred"] + c.lambda_latent * parts["latent"]
    return total
