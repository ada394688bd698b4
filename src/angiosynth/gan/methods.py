"""The translation methods, each as one generator module and one discriminator module.

x is the non-contrast domain, y the angiograms; images are (B, 1, H, W) in [-1, 1].

- CycleGAN: G_xy, G_yx (ResNet generators), D_x, D_y (PatchGAN). Generator loss: LSGAN on
  both fakes + lambda_cycle (|G_yx(G_xy(x)) - x| + |G_xy(G_yx(y)) - y|) + lambda_cycle
  lambda_identity (|G_xy(y) - y| + |G_yx(x) - x|).
- AttentionGAN (scheme II): CycleGAN with attention generators (`models.gan.AttentionGenerator`).
- CUT: one generator G_xy, its patch sampler F and D_y. Generator loss: lambda_gan LSGAN +
  lambda_nce PatchNCE(G_xy(x), x), averaged with PatchNCE(G_xy(y), y) when nce_identity.
- CAS-GAN: `gan.casgan` (D_x, D_y and, with VSGL, D_Sem on segmentation maps).

Each step makes one forward call per module (the generators' forward computes every image of
the step and, for CUT, the PatchNCE terms), so the modules run under DistributedDataParallel
as they are. The discriminators judge fakes for the generator loss through their unwrapped
module with gradients off (`Discriminators.judge`).
"""

from __future__ import annotations

import torch
from torch import nn

from angiosynth.config import TRANSLATION_METHODS, TranslateConfig
from angiosynth.errors import OptionError
from angiosynth.gan.casgan import CASGANGenerators, casgan_terms
from angiosynth.gan.losses import lsgan_loss, patch_nce_loss
from angiosynth.gan.steps import StepImages
from angiosynth.models.gan import (
    AttentionGenerator,
    PatchDiscriminator,
    PatchSampler,
    ResnetGenerator,
    init_weights,
)


class Discriminators(nn.Module):
    """One PatchGAN per judged domain ("x" and/or "y")."""

    def __init__(self, domains: tuple[str, ...], config: TranslateConfig) -> None:
        super().__init__()
        d = config.discriminator
        self.nets = nn.ModuleDict(
            {name: PatchDiscriminator(d.ndf, d.n_layers, norm="instance") for name in domains}
        )
        init_weights(self, config.generator.init, config.generator.init_gain)

    def forward(self, images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """domain -> (B, 1, H, W) images, to domain -> (B, 1, H', W') patch logits."""
        return {name: self.nets[name](batch) for name, batch in images.items()}


def judge(discriminators: Discriminators, images: dict[str, torch.Tensor]) -> dict:
    """The discriminators' logits on fakes for the generator loss: gradients reach the fakes
    but not the discriminators' weights (`discriminators` is the unwrapped module)."""
    discriminators.requires_grad_(False)
    try:
        return discriminators(images)
    finally:
        discriminators.requires_grad_(True)


class CycleGenerators(nn.Module):
    """G_xy and G_yx of CycleGAN / AttentionGAN and every image a step needs."""

    def __init__(self, config: TranslateConfig, attention: bool) -> None:
        super().__init__()
        g = config.generator

        def build() -> nn.Module:
            if attention:
                return AttentionGenerator(g.ngf, g.n_blocks, g.n_downsampling, g.n_content)
            return ResnetGenerator(g.ngf, g.n_blocks, g.n_downsampling)

        self.g_xy, self.g_yx = build(), build()
        self.identity = config.cycle.lambda_identity > 0
        init_weights(self, g.init, g.init_gain)

    @property
    def translator(self) -> nn.Module:
        """The x -> y network (what `angiosynth translate` runs)."""
        return self.g_xy

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator=None) -> StepImages:
        """Every image of a step from (B, 1, H, W) x and y (`generator` is unused: the
        methods share one signature, and only CUT draws patch positions)."""
        fake_y, fake_x = self.g_xy(x), self.g_yx(y)
        extras = {"rec_x": self.g_yx(fake_y), "rec_y": self.g_xy(fake_x)}
        if self.identity:
            extras |= {"idt_y": self.g_xy(y), "idt_x": self.g_yx(x)}
        return StepImages({"y": fake_y, "x": fake_x}, extras)


class CUTGenerator(nn.Module):
    """CUT's G_xy with its patch sampler; the forward also computes the PatchNCE losses."""

    def __init__(self, config: TranslateConfig) -> None:
        super().__init__()
        g, c = config.generator, config.cut
        self.g_xy = ResnetGenerator(g.ngf, g.n_blocks, g.n_downsampling)
        self.layers, self.c = tuple(c.nce_layers), c
        probe = torch.zeros(1, 1, 4 * 2**g.n_downsampling, 4 * 2**g.n_downsampling)
        with torch.no_grad():
            channels = tuple(f.shape[1] for f in self.g_xy.features(probe, self.layers))
        self.sampler = PatchSampler(channels, c.mlp_width)
        init_weights(self, g.init, g.init_gain)

    @property
    def translator(self) -> nn.Module:
        return self.g_xy

    def forward(self, x: torch.Tensor, y: torch.Tensor, generator=None) -> StepImages:
        """The fake angiograms and the PatchNCE terms; `generator` draws the patch positions."""
        both = torch.cat([x, y]) if self.c.nce_identity else x
        out = self.g_xy(both)
        fake_y = out[: len(x)]
        extras = {"nce_x": self._nce(x, fake_y, generator)}
        if self.c.nce_identity:
            extras["nce_y"] = self._nce(y, out[len(x) :], generator)
        return StepImages({"y": fake_y}, extras)

    def _nce(self, source: torch.Tensor, output: torch.Tensor, generator) -> torch.Tensor:
        """PatchNCE between the encoder features of the output (queries) and of the source
        (keys), averaged over the layers."""
        keys, positions = self.sampler(
            self.g_xy.features(source, self.layers), self.c.num_patches, generator=generator
        )
        queries, _ = self.sampler(
            self.g_xy.features(output, self.layers), self.c.num_patches, positions
        )
        losses = [
            patch_nce_loss(q, k, len(source), self.c.temperature)
            for q, k in zip(queries, keys, strict=True)
        ]
        return torch.stack(losses).mean()


class TranslationMethod:
    """A method's networks and its generator loss.

    Attributes:
        name: cyclegan, attentiongan, cut or casgan.
        generators: the generator module (its `translator` is the x -> y network).
        discriminators: the discriminator module.
        domains: the domains the discriminators judge ("sem": CAS-GAN's segmentation maps).

    Args:
        segmenter: CAS-GAN's frozen vessel segmenter (with casgan.vsgl).
    """

    def __init__(
        self, name: str, config: TranslateConfig, segmenter: nn.Module | None = None
    ) -> None:
        if name not in TRANSLATION_METHODS:
            choices = ", ".join(TRANSLATION_METHODS)
            raise OptionError(f"--method must be one of {choices}, got {name!r}")
        self.name, self.config = name, config
        if name == "cut":
            self.generators: nn.Module = CUTGenerator(config)
            self.domains: tuple[str, ...] = ("y",)
        elif name == "casgan":
            self.generators = CASGANGenerators(config, segmenter)
            self.domains = ("x", "y", "sem") if config.casgan.vsgl else ("x", "y")
        else:
            self.generators = CycleGenerators(config, attention=name == "attentiongan")
            self.domains = ("x", "y")
        self.discriminators = Discriminators(self.domains, config)

    def generator_loss(
        self, images: StepImages, x: torch.Tensor, y: torch.Tensor, logits: dict
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The generator objective and its parts (floats for the log).

        Args:
            images: the generators' forward output.
            x, y: the step's real images.
            logits: the discriminators' logits on `images.fakes`.
        """
        parts = {f"gan_{d}": lsgan_loss(logits[d], True) for d in self.domains}
        if self.name == "cut":
            c = self.config.cut
            nce = images.extras["nce_x"]
            if "nce_y" in images.extras:
                parts["nce_y"] = images.extras["nce_y"]
                nce = 0.5 * (nce + parts["nce_y"])
            parts["nce_x"] = images.extras["nce_x"]
            total = c.lambda_gan * parts["gan_y"] + c.lambda_nce * nce
        elif self.name == "casgan":
            total = casgan_terms(images, x, y, parts, self.config)
        else:
            total = self._cycle_terms(images, x, y, parts)
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def _cycle_terms(self, images: StepImages, x, y, parts: dict) -> torch.Tensor:
        c = self.config.cycle
        e = images.extras
        parts["cycle_x"] = (e["rec_x"].float() - x).abs().mean()
        parts["cycle_y"] = (e["rec_y"].float() - y).abs().mean()
        total = parts["gan_x"] + parts["gan_y"]
        total = total + c.lambda_cycle * (parts["cycle_x"] + parts["cycle_y"])
        if "idt_y" in e:
            parts["identity_x"] = (e["idt_x"].float() - x).abs().mean()
            parts["identity_y"] = (e["idt_y"].float() - y).abs().mean()
            weight = c.lambda_cycle * c.lambda_identity
            total = total + weight * (parts["identity_x"] + parts["identity_y"])
        return total
