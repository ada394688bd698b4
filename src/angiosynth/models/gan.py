"""The networks of image-to-image translation (CycleGAN, AttentionGAN scheme II, CUT and
CAS-GAN) and the PatchGAN discriminator, all single-channel and fully convolutional.

Facts from the published architectures (SPEC.md "Contrast-free translation"):

- ResNet generator: 7 x 7 convolution to `ngf` channels, `n_downsampling` stride-2 3 x 3
  convolutions doubling the width, `n_blocks` residual blocks (reflection padding, two 3 x 3
  convolutions), as many stride-2 transposed convolutions back, a 7 x 7 convolution to one
  channel and tanh; InstanceNorm without affine parameters after every convolution but the
  last. Images are in [-1, 1]; any side divisible by 2 ** n_downsampling is translated whole.
- AttentionGAN scheme II: the same encoder, shared by a content decoder (`n_content` images,
  tanh) and an attention decoder (`n_content` + 1 masks, 1 x 1 convolution, softmax over the
  masks); output = sum_i content_i * attention_i + input * attention_background.
- PatchGAN (pix2pix's 70 x 70): 4 x 4 convolutions, 64-128-256-512 channels, LeakyReLU 0.2,
  one logit per overlapping patch.
- CAS-GAN (seed 002; no public code): `CASGANGenerator`, built from the same encoder,
  residual blocks and decoders (see its docstring and `gan.casgan`).
- CUT's patch sampler: per encoder layer a two-layer MLP (ReLU) of width 256 over features at
  sampled positions, L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x) with reflection padding; (B, C, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet_encoder(ngf: int, n_blocks: int, n_downsampling: int) -> list[nn.Module]:
    """The encoder layers, flat: [pad, conv7, norm, relu, (conv s2, norm, relu) x n_down,
    residual blocks]. With the defaults, layer 0 is the padded input, 4 and 7 the two
    downsampling convolutions, 10 + k the k-th residual block (CUT's feature layers)."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(1, ngf, 7),
        _norm(ngf),
        nn.ReLU(True),
    ]
    width = ngf
    for _ in range(n_downsampling):
        layers += [
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1),
            _norm(width * 2),
            nn.ReLU(True),
        ]
        width *= 2
    return layers + [ResidualBlock(width) for _ in range(n_blocks)]


def resnet_decoder(width: int, n_upsampling: int, out_channels: int, head: str) -> list[nn.Module]:
    """Transposed-convolution upsampling from `width` channels, then the output head:
    "tanh" (reflection-padded 7 x 7 convolution and tanh) or "logits" (1 x 1 convolution)."""
    layers: list[nn.Module] = []
    for _ in range(n_upsampling):
        layers += [
            nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
            _norm(width // 2), nn.ReLU(True),
        ]  # fmt: skip
        width //= 2
    if head == "tanh":
        return [*layers, nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
    return [*layers, nn.Conv2d(width, out_channels, 1)]


class ResnetGenerator(nn.Module):
    """CycleGAN's / CUT's ResNet generator: (B, 1, H, W) in [-1, 1] -> (B, 1, H, W) in [-1, 1].

    `layers` is one flat Sequential (encoder, then decoder), so `features` can return the
    outputs of encoder layers by index.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 9, n_downsampling: int = 2) -> None:
        super().__init__()
        self.n_downsampling = n_downsampling
        encoder = resnet_encoder(ngf, n_blocks, n_downsampling)
        self.encoder_length = len(encoder)
        decoder = resnet_decoder(ngf * 2**n_downsampling, n_downsampling, 1, "tanh")
        self.layers = nn.Sequential(*encoder, *decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def features(self, x: torch.Tensor, layer_ids: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of the encoder layers `layer_ids` (each (B, C_l, H_l, W_l)), in that order."""
        wanted, found = set(layer_ids), {}
        for index, layer in enumerate(self.layers[: max(layer_ids) + 1]):
            x = layer(x)
            if index in wanted:
                found[index] = x
        return [found[i] for i in layer_ids]


class AttentionGenerator(nn.Module):
    """AttentionGAN's scheme-II generator: (B, 1, H, W) in [-1, 1] -> (B, 1, H, W).

    `parts(x)` also returns the content images (B, n, H, W) and the attention masks
    (B, n + 1, H, W), the last one the background (input) mask; masks sum to 1 per pixel.
    """

    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, n_downsampling: int = 2, n_content: int = 9
    ) -> None:
        super().__init__()
        self.n_downsampling = n_downsampling
        width = ngf * 2**n_downsampling
        self.encoder = nn.Sequential(*resnet_encoder(ngf, n_blocks, n_downsampling))
        self.content = nn.Sequential(*resnet_decoder(width, n_downsampling, n_content, "tanh"))
        self.attention = nn.Sequential(
            *resnet_decoder(width, n_downsampling, n_content + 1, "logits")
        )

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, content, attention) for input x."""
        code = self.encoder(x)
        content = self.content(code)
        attention = torch.softmax(self.attention(code), dim=1)
        output = (content * attention[:, :-1]).sum(1, keepdim=True) + x * attention[:, -1:]
        return output, content, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)[0]


class CASGANGenerator(nn.Module):
    """CAS-GAN's x -> y network: background encoder E_BG, predictor M and the vessel heads.

    For (B, 1, H, W) x in [-1, 1]: z_bg = E_BG(x) and z_vess = M(z_bg), both (B, C, H / f, W / f)
    with C = ngf * f and f = 2 ** n_downsampling. With `vsgg`, an attention head gives
    A = sigmoid(G_attn(z_vess)) and a content head C = tanh(G_ctx(z_vess)), each (B, 1, H, W),
    and y_g = x (1 - A) + C A: the input passes unchanged wherever A is 0. Without, the content
    head draws y_g whole.
    """

    def __init__(
        self,
        ngf: int = 64,
        encoder_blocks: int = 4,
        predictor_blocks: int = 5,
        n_downsampling: int = 2,
        vsgg: bool = True,
    ) -> None:
        super().__init__()
        self.n_downsampling, self.vsgg = n_downsampling, vsgg
        self.width = width = ngf * 2**n_downsampling
        self.encoder = nn.Sequential(*resnet_encoder(ngf, encoder_blocks, n_downsampling))
        self.predictor = nn.Sequential(*(ResidualBlock(width) for _ in range(predictor_blocks)))
        self.content = nn.Sequential(*resnet_decoder(width, n_downsampling, 1, "tanh"))
        self.attention = (
            nn.Sequential(*resnet_decoder(width, n_downsampling, 1, "logits")) if vsgg else None
        )

    def decode(
        self, base: torch.Tensor, code: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The angiogram drawn from a (B, C, h, w) vessel code over the (B, 1, H, W) image
        `base` (VSGG's composite; ignored without VSGG); returns it and A (None without)."""
        content = self.content(code)
        if self.attention is None:
            return content, None
        attention = torch.sigmoid(self.attention(code))
        return base * (1 - attention) + content * attention, attention

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(y_g, A) for input x (A is None without VSGG)."""
        return self.decode(x, self.predictor(self.encoder(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)[0]


class PatchDiscriminator(nn.Sequential):
    """PatchGAN discriminator (pix2pix's 70 x 70 design with `layers` stride-2 stages).

    (B, 1, H, W) -> (B, 1, H', W') real/fake logits, one per overlapping patch. `norm` is
    "batch" (the autoencoder's) or "instance" (CycleGAN's and CUT's); convolutions followed by
    InstanceNorm keep their bias, as in CycleGAN.
    """

    def __init__(self, channels: int = 64, layers: int = 3, norm: str = "batch") -> None:
        if norm not in ("batch", "instance"):
            raise ValueError(f"norm must be batch or instance, got {norm!r}")
        blocks: list[nn.Module] = [
            nn.Conv2d(1, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=norm == "instance"),
                nn.BatchNorm2d(out) if norm == "batch" else _norm(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        super().__init__(*blocks)


class PatchSampler(nn.Module):
    """CUT's patch sampler F: features at sampled positions through one MLP per layer.

    Args:
        channels: the channel count of each feature layer it will see.
        width: the MLPs' width (output dimension).
    """

    def __init__(self, channels: tuple[int, ...], width: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, width), nn.ReLU(True), nn.Linear(width, width))
            for c in channels
        )

    def forward(
        self,
        features: list[torch.Tensor],
        num_patches: int,
        positions: list[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Samples `num_patches` positions per layer (or reuses `positions`).

        Args:
            features: per layer (B, C_l, H_l, W_l).
            positions: per layer (P,) flat positions to reuse (the query and the key images
                must be sampled at the same places).
            generator: draws the positions (CPU generator; seeded by the trainer).

        Returns:
            Per layer (B * P, width) L2-normalised embeddings, and the positions used.
        """
        out, used = [], []
        for index, (feature, mlp) in enumerate(zip(features, self.mlps, strict=True)):
            flat = feature.flatten(2).transpose(1, 2)  # (B, H*W, C)
            if positions is None:
                count = min(num_patches, flat.shape[1])
                chosen = torch.randperm(flat.shape[1], generator=generator)[:count]
            else:
                chosen = positions[index]
            picked = flat[:, chosen.to(flat.device)].flatten(0, 1)  # (B * P, C)
            out.append(F.normalize(mlp(picked), dim=1))
            used.append(chosen)
        return out, used


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialises convolution and linear weights: N(0, gain) ("normal", CycleGAN's) or Xavier
    normal with `gain` ("xavier", CUT's); biases to 0. Draws from torch's global RNG."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if kind == "normal":
                nn.init.normal_(layer.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(layer.weight, gain=gain)
            else:
                raise ValueError(f"unknown init {kind!r}")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
