"""Typed configuration models and YAML loading.

Every model forbids unknown keys, so a misspelt option is an error that names the field instead of
being silently ignored. This module imports nothing else from angiosynth but `errors`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from angiosynth.errors import AngiosynthError


class ConfigError(AngiosynthError, ValueError):
    """A configuration file or value is invalid; the message names the file and field."""


class StrictModel(BaseModel):
    """Base for configuration models: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PhantomConfig(StrictModel):
    """How the DSA phantom simulates and writes an archive.

    Attributes:
        image_size: detector pixels per side (square frames).
        field_of_view_mm: detector field of view at the isocentre.
        bits_stored: DICOM Bits Stored of the native frames.
        oblique_share: probability that a run uses oblique (non-canonical) C-arm angles.
        annotate_share: share of kept-circulation series given an expert-style annotation.
        photons_per_pixel: unattenuated detector counts per pixel (sets quantum noise).
        detector_blur_mm: standard deviation of the detector's Gaussian blur.
        motion_px_per_frame: standard deviation of patient motion per frame (random walk).
    """

    image_size: int = Field(512, ge=64, le=2048)
    field_of_view_mm: float = Field(230.0, gt=50, le=500)
    bits_stored: int = 12
    oblique_share: float = Field(0.5, ge=0, le=1)
    annotate_share: float = Field(0.3, ge=0, le=1)
    photons_per_pixel: float = Field(6.0e5, gt=0)
    detector_blur_mm: float = Field(0.3, ge=0)
    motion_px_per_frame: float = Field(0.06, ge=0)

    @model_validator(mode="after")
    def _check_bits(self) -> PhantomConfig:
        if self.bits_stored not in (10, 12, 16):
            raise ValueError(f"bits_stored must be 10, 12 or 16, got {self.bits_stored}")
        return self

    @property
    def pixel_spacing_mm(self) -> float:
        """Pixel spacing at the isocentre."""
        return self.field_of_view_mm / self.image_size


Model = TypeVar("Model", bound=StrictModel)


def load_config(path: Path, model: type[Model], section: str | None = None) -> Model:
    """Loads and validates a YAML file (or one top-level section of it) into `model`.

    Raises:
        ConfigError: with a one-line message naming the file and the offending field.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"{path}: cannot read YAML ({err.__class__.__name__}: {detail})") from err
    if section is not None and isinstance(data, dict):
        data = data.get(section) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in ((section,) if section else ()) + tuple(first["loc"]))
        raise ConfigError(f"{path}: {where or 'config'}: {first['msg']}") from err


# --- latent diffusion (configs/paper.yaml, configs/tiny.yaml) -------------------------------


class DataConfig(StrictModel):
    """Which frames a diffusion run learns from.

    Attributes:
        image_size: frames are resized to this side (the curated frames are 256 by default).
        train_split, val_split: dataset splits used for training and validation.
    """

    image_size: int = Field(256, ge=16, le=1024)
    train_split: str = "train"
    val_split: str = "val"


class VAEConfig(StrictModel):
    """diffusers AutoencoderKL with one image channel (SPEC.md "Models").

    Each entry of `block_out_channels` is one encoder level; every level after the first halves
    the resolution, so 3 levels give the paper's f = 4 (256 x 256 -> 64 x 64 x 3).
    """

    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = Field(2, ge=1)
    latent_channels: int = Field(3, ge=1)
    norm_num_groups: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check_groups(self) -> VAEConfig:
        _check_divisible(self.block_out_channels, self.norm_num_groups, "vae")
        return self

    @property
    def downsampling(self) -> int:
        """Image side / latent side."""
        return 2 ** (len(self.block_out_channels) - 1)


class TextEncoderConfig(StrictModel):
    """The BERT-style prompt encoder trained from scratch (models.text_encoder)."""

    width: int = Field(512, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(8, ge=1)
    ffn_mult: int = Field(4, ge=1)
    max_length: int = Field(32, ge=8)
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check_heads(self) -> TextEncoderConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        return self


class UNetConfig(StrictModel):
    """diffusers UNet2DConditionModel (SPEC.md "Models").

    `attention_head_dim` is, as in diffusers, the number of heads per level (896 / 28 = 32
    channels per head in the paper's deepest level), not the width of a head.
    """

    block_out_channels: tuple[int, ...] = (224, 448, 896, 896)
    layers_per_block: int = Field(2, ge=1)
    down_block_types: tuple[str, ...] = (
        "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
    )  # fmt: skip
    up_block_types: tuple[str, ...] = (
        "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D",
    )  # fmt: skip
    attention_head_dim: tuple[int, ...] = (7, 14, 28, 28)
    transformer_layers_per_block: int = Field(1, ge=1)
    norm_num_groups: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check_levels(self) -> UNetConfig:
        n = len(self.block_out_channels)
        for name in ("down_block_types", "up_block_types", "attention_head_dim"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs {n} entries (one per level of block_out_channels)")
        _check_divisible(self.block_out_channels, self.norm_num_groups, "unet")
        for channels, heads in zip(self.block_out_channels, self.attention_head_dim, strict=True):
            if channels % heads:
                raise ValueError(f"{channels} channels are not divisible into {heads} heads")
        return self


class DiffusionConfig(StrictModel):
    """The DDPM forward process. CompVis' "linear" schedule is diffusers' "scaled_linear":
    betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2."""

    num_train_timesteps: int = Field(1000, ge=10)
    beta_start: float = Field(0.0015, gt=0, lt=1)
    beta_end: float = Field(0.0195, gt=0, lt=1)
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"

    @model_validator(mode="after")
    def _check(self) -> DiffusionConfig:
        if self.beta_schedule not in ("scaled_linear", "linear"):
            raise ValueError(
                f"beta_schedule must be scaled_linear or linear, got {self.beta_schedule}"
            )
        if self.prediction_type != "epsilon":
            raise ValueError("only epsilon prediction is supported (the paper's)")
        if self.beta_end <= self.beta_start:
            raise ValueError("beta_end must exceed beta_start")
        return self


PERCEPTUAL_LOSSES = ("auto", "lpips", "stlpips", "none")
#: accelerate's mixed precision ("no": fp32), plus "auto" (bf16 where it is fast, see
#: `runtime.resolve_mixed_precision`) and "fp32" (a synonym of "no").
MIXED_PRECISIONS = ("no", "fp32", "bf16", "fp16", "auto")


class TrainLoopConfig(StrictModel):
    """Settings every training loop shares (`training.loop`); each trainer's config extends it.

    Attributes:
        batch_size: images per optimiser step, over all processes and accumulation
            micro-batches.
        gradient_accumulation: micro-batches per optimiser step (batch_size must divide).
        lr: (peak) learning rate.
        weight_decay: AdamW's weight decay.
        epochs: passes over the training set.
        max_steps: when set, the run's length in optimiser steps (else epochs decide).
        mixed_precision: "no"/"fp32", "bf16", "fp16" or "auto" (bf16 where it is fast).
        max_grad_norm: clip the gradients' norm to this (None: no clipping).
        ema_decay: decay of an exponential moving average of the weights (None: no EMA).
        checkpoint_every: checkpoint period in optimiser steps (None: only at the end, and only
            when the run is cut short with `stop_after`).
        keep_checkpoints: how many of the latest checkpoints are kept.
        log_every: one log record (mean losses, learning rate, speed) per this many steps.
        seed: seeds weights, batch order, noise and augmentation.
    """

    batch_size: int = Field(32, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    epochs: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)
    mixed_precision: str = "no"
    max_grad_norm: float | None = Field(None, gt=0)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    checkpoint_every: int | None = Field(None, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 0

    #: Settings a resumed run may change (how long it trains, how often it saves and logs).
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "epochs", "max_steps", "checkpoint_every", "keep_checkpoints", "log_every",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check_loop(self) -> TrainLoopConfig:
        _check_choice(self.mixed_precision, MIXED_PRECISIONS, "mixed_precision")
        if self.batch_size % self.gradient_accumulation:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by gradient_accumulation "
                f"{self.gradient_accumulation}"
            )
        return self

    @property
    def micro_batch_size(self) -> int:
        """Images per micro-batch over all processes (batch_size / gradient_accumulation)."""
        return self.batch_size // self.gradient_accumulation

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length: `max_steps` when set, else `epochs` x `steps_per_epoch`.

        Raises:
            ConfigError: neither is set.
        """
        if self.max_steps is None and self.epochs is None:
            raise ConfigError(f"{type(self).__name__}: give epochs or max_steps")
        return self.max_steps or self.epochs * steps_per_epoch


class VAETrainConfig(TrainLoopConfig):
    """Autoencoder training (paper §4.3: batch 20, lr 2e-5, <= 100 epochs, patience 10).

    Attributes:
        betas: the autoencoder's AdamW betas (CompVis' autoencoder: 0.5, 0.9).
        patience: stop after this many epochs without a better validation loss.
        perceptual: "lpips" (VGG LPIPS; needs torchvision's ImageNet VGG-16 in the torch hub
            cache), "stlpips" (shift-tolerant LPIPS, ships its VGG weights), "auto" (lpips when
            cached, else stlpips) or "none". The run's config names the loss used.
        perceptual_net: the perceptual loss's backbone, "vgg" (the paper's) or "alex".
        gan_weight: weight of an optional PatchGAN hinge loss (0 = off), from `gan_start_step`.
        disc_lr, disc_betas: the discriminator's AdamW learning rate (None: `lr`) and betas.
    """

    batch_size: int = Field(20, ge=1)
    lr: float = Field(2e-5, gt=0)
    betas: tuple[float, float] = (0.5, 0.9)
    epochs: int | None = Field(100, ge=1)
    checkpoint_every: int | None = Field(1000, ge=1)
    patience: int = Field(10, ge=1)
    l1_weight: float = Field(1.0, ge=0)
    perceptual: str = "auto"
    perceptual_net: str = "vgg"
    perceptual_weight: float = Field(1.0, ge=0)
    kl_weight: float = Field(1e-6, ge=0)
    gan_weight: float = Field(0.0, ge=0)
    gan_start_step: int = Field(0, ge=0)
    disc_lr: float | None = Field(None, gt=0)
    disc_betas: tuple[float, float] = (0.5, 0.9)

    @model_validator(mode="after")
    def _check(self) -> VAETrainConfig:
        _check_choice(self.perceptual, PERCEPTUAL_LOSSES, "perceptual")
        _check_choice(self.perceptual_net, ("vgg", "alex"), "perceptual_net")
        return self


class LDMTrainConfig(TrainLoopConfig):
    """Latent diffusion training (paper §4.4-4.5: batch 96, lr 5e-5, <= 50 epochs).

    Attributes:
        batch_size: images per optimiser step, over all processes and accumulation
            micro-batches (each process draws batch_size / processes / accumulation at a time).
        scale_lr: multiply `lr` by processes x batch per process x accumulation (= batch_size),
            as CompVis does by default (False: `lr` is the learning rate used).
        ema_decay: EMA decay (diffusers EMAModel, with warm-up when `ema_warmup`).
        condition_dropout: share of prompts replaced by the empty prompt (classifier-free
            guidance); 1.0 trains an unconditional model.
        condition_balanced: draw the four views (AC A, PC A, AC B, PC B) equally often.
        cache_latents: encode the frames once into RUN/latents.npy (memory-mapped), else per batch.
    """

    batch_size: int = Field(96, ge=1)
    lr: float = Field(5e-5, gt=0)
    scale_lr: bool = False
    lr_warmup_steps: int = Field(0, ge=0)
    epochs: int | None = Field(50, ge=1)
    ema_decay: float | None = Field(0.9999, gt=0, lt=1)
    ema_warmup: bool = True
    condition_dropout: float = Field(0.1, ge=0, le=1)
    condition_balanced: bool = False
    max_grad_norm: float | None = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    cache_latents: bool = True
    checkpoint_every: int | None = Field(1000, ge=1)
    keep_checkpoints: int = Field(3, ge=1)


class ClassifierTrainConfig(TrainLoopConfig):
    """A frame classifier's training (ResNet-18 from scratch, BCE with logits, AdamW with a
    one-cycle schedule): the phase classifier and the view classifier.

    Attributes:
        epochs: passes over the training frames; None: as many whole epochs as `min_steps`
            optimiser steps need (so a small dataset still trains long enough: 12 phantom
            patients give 8 batches per epoch, and 8 epochs left the phase classifier
            uncalibrated, recall 0 at 0.5).
        min_steps: optimiser steps to aim for when `epochs` and `max_steps` are None.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        workers: DataLoader worker processes (0 = read in the training process).
        checkpoint_every: as in `TrainLoopConfig`, rounded up to whole epochs (a classifier
            resumes at an epoch boundary).
    """

    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    min_steps: int = Field(240, ge=1)
    mixed_precision: str = "auto"
    device: str = "auto"
    workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check_device(self) -> ClassifierTrainConfig:
        _check_choice(self.device, ("auto", "cpu", "cuda"), "device")
        return self

    def total_steps(self, steps_per_epoch: int) -> int:
        """`max_steps` when set, else `epochs` whole epochs, else the whole epochs that reach
        `min_steps`."""
        if self.max_steps is not None:
            return self.max_steps
        epochs = self.epochs or math.ceil(self.min_steps / max(steps_per_epoch, 1))
        return epochs * steps_per_epoch


BALANCES = ("pos_weight", "sampler", "none")


class PhaseTrainConfig(ClassifierTrainConfig):
    """The arterial-phase classifier (paper §2.2, §4.2; `training.phase`).

    Attributes:
        balance: "pos_weight" (BCE weight negatives/positives on positives), "sampler"
            (positives and negatives drawn equally often, with replacement) or "none".
        positive_window_s, negative_gap_s: the label rule (`data.phase.LabelRule`).
        holdout_share: share of annotated patients held out when the dataset split is too small.
    """

    balance: str = "pos_weight"
    positive_window_s: float = Field(0.5, ge=0)
    negative_gap_s: float = Field(1.0, gt=0)
    holdout_share: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _check_phase(self) -> PhaseTrainConfig:
        _check_choice(self.balance, BALANCES, "balance")
        return self


class ViewTrainConfig(ClassifierTrainConfig):
    """The view classifier of the evaluation (`training.view`).

    Attributes:
        min_steps: optimiser steps to aim for.
        source_size: side the frames pass through before the classifier's 128 (None: none).
    """

    min_steps: int = Field(300, ge=1)
    source_size: int | None = Field(None, ge=8)


SAMPLERS = ("ddpm", "ddim", "dpmpp")


class SampleConfig(StrictModel):
    """Sampling defaults (paper: ancestral DDPM, 1000 steps, no guidance)."""

    sampler: str = "ddpm"
    steps: int = Field(1000, ge=1)
    guidance: float = Field(1.0, ge=0)
    batch_size: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SampleConfig:
        _check_choice(self.sampler, SAMPLERS, "sampler")
        return self


class LDMConfig(StrictModel):
    """A whole latent-diffusion configuration (configs/paper.yaml, configs/tiny.yaml)."""

    data: DataConfig = Field(default_factory=DataConfig)
    vae: VAEConfig = Field(default_factory=VAEConfig)
    text_encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    unet: UNetConfig = Field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    train_vae: VAETrainConfig = Field(default_factory=VAETrainConfig)
    train_ldm: LDMTrainConfig = Field(default_factory=LDMTrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)

    @model_validator(mode="after")
    def _check_sizes(self) -> LDMConfig:
        factor = self.vae.downsampling * 2 ** (len(self.unet.block_out_channels) - 1)
        if self.data.image_size % factor:
            raise ValueError(
                f"data.image_size {self.data.image_size} must be divisible by {factor} "
                "(VAE and UNet downsampling)"
            )
        return self

    @property
    def latent_size(self) -> int:
        """Side of the latents the UNet denoises."""
        return self.data.image_size // self.vae.downsampling


# --- contrast-free translation (configs/translate-paper.yaml, configs/translate-tiny.yaml) ----

TRANSLATION_METHODS = ("cyclegan", "attentiongan", "cut", "casgan")


class TranslateDataConfig(StrictModel):
    """How frames become training crops.

    Attributes:
        image_size: frames are resized to this side first (None: as stored; CycleGAN's
            "load size").
        crop_size: side of the random training crops (the networks are fully convolutional:
            whole frames are translated afterwards).
        flip: random horizontal flips of the crops.
    """

    image_size: int | None = Field(None, ge=16)
    crop_size: int = Field(256, ge=16)
    flip: bool = True

    @model_validator(mode="after")
    def _check(self) -> TranslateDataConfig:
        if self.image_size is not None and self.crop_size > self.image_size:
            raise ValueError(f"crop_size {self.crop_size} exceeds image_size {self.image_size}")
        return self


class GeneratorConfig(StrictModel):
    """The ResNet generator (CycleGAN: ngf 64, 9 residual blocks, 2 downsamplings).

    `n_content` is AttentionGAN's number of content images (its attention decoder gives
    n_content + 1 masks, the last for the input).
    """

    ngf: int = Field(64, ge=1)
    n_blocks: int = Field(9, ge=1)
    n_downsampling: int = Field(2, ge=1, le=4)
    n_content: int = Field(9, ge=1)
    init: str = "normal"
    init_gain: float = Field(0.02, gt=0)

    @model_validator(mode="after")
    def _check(self) -> GeneratorConfig:
        _check_choice(self.init, ("normal", "xavier"), "init")
        return self


class DiscriminatorConfig(StrictModel):
    """The 70 x 70 PatchGAN (64-128-256-512-1 with ndf 64 and 3 layers)."""

    ndf: int = Field(64, ge=1)
    n_layers: int = Field(3, ge=1)


class CycleLossConfig(StrictModel):
    """CycleGAN's and AttentionGAN's losses (LSGAN, cycle 10 per direction, identity 0.5 x
    cycle, a pool of 50 earlier fakes for the discriminators)."""

    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0)
    pool_size: int = Field(50, ge=0)


class CUTLossConfig(StrictModel):
    """CUT's losses (LSGAN with weight 1, PatchNCE with weight 1 on 256 patches of five encoder
    layers, temperature 0.07, identity NCE on). FastCUT: lambda_nce 10, nce_identity off.

    `nce_layers` index the generator's flat encoder (`models.gan.resnet_encoder`): CUT's
    0, 4, 8, 12, 16 are the input, the two downsampling convolutions and the first and fifth
    residual blocks, which are 0, 4, 7, 10, 14 here.
    """

    lambda_gan: float = Field(1.0, ge=0)
    lambda_nce: float = Field(1.0, ge=0)
    nce_layers: tuple[int, ...] = (0, 4, 7, 10, 14)
    num_patches: int = Field(256, ge=1)
    temperature: float = Field(0.07, gt=0)
    nce_identity: bool = True
    mlp_width: int = Field(256, ge=1)


class CASGANConfig(StrictModel):
    """CAS-GAN (seed 002; SPEC.md "Contrast-free translation and CAS-GAN"). Its authors
    published no sizes, loss weights or segmenter, so every number here is angiosynth's default.

    The x -> y network is a background encoder E_BG (the generator's stem and
    `encoder_blocks` residual blocks, shared by both domains), a predictor M
    (`predictor_blocks` residual blocks) and decoder heads: 4 + 5 blocks keep the depth of the
    ResNet-9 generators of the baselines. The reverse direction decodes E_BG's code with a
    background decoder D_BG. The cycle and identity weights and the image pool are the
    `cycle` section's (CycleGAN's).

    Attributes:
        drl: disentanglement representation learning: a vessel encoder E_Vess for angiograms,
            L_pred = |M(E_BG(y)) - E_Vess(y)|_1 (E_Vess's code is the target), y's cycle drawn
            from its own vessel code, and the latent cycle. Off: M is a plain trunk and the
            identity loss is CycleGAN's.
        vsgg: vessel semantic-guided generation: attention A and content C heads on M's code,
            y_g = x (1 - A) + C A. Off: one decoder draws y_g whole.
        vsgl: vessel semantic-guided loss: a frozen vessel segmenter S (`angiosynth train
            segmenter`) and a PatchGAN D_Sem on S(y) against S(y_g).
        lambda_pred: weight of L_pred (the same scale as the image GAN terms).
        lambda_latent: weight of the latent cycle: |E_BG(y_g) - E_BG(x)| + |E_BG(x_g) -
            E_BG(y)| + |E_Vess(y_g) - M(E_BG(x))|, the codes of the real inputs as targets.
        lambda_sem: weight of the semantic GAN term (as the image GAN terms).
        attention_bias: initial bias of the attention head's last convolution: sigmoid(-3) =
            0.05, so y_g starts close to x and the generator learns where to draw (at 0 it
            starts as an even blend of x and an untrained content image).
    """

    drl: bool = True
    vsgg: bool = True
    vsgl: bool = True
    encoder_blocks: int = Field(4, ge=0)
    predictor_blocks: int = Field(5, ge=1)
    lambda_pred: float = Field(1.0, ge=0)
    lambda_latent: float = Field(1.0, ge=0)
    lambda_sem: float = Field(1.0, ge=0)
    attention_bias: float = -3.0

    @property
    def cell(self) -> str:
        """The ablation cell's name: the modules on, joined by "+", or "none"."""
        on = [name.upper() for name in ("drl", "vsgg", "vsgl") if getattr(self, name)]
        return "+".join(on) or "none"


class TranslateTrainConfig(TrainLoopConfig):
    """Translation training (CycleGAN: batch 1, Adam 2e-4 (0.5, 0.999), 100 epochs at constant
    lr then 100 of linear decay to 0; CUT: 200 + 200).

    Attributes:
        betas: Adam's betas (generators and discriminators).
        decay_share: the last share of the steps over which the lr decays linearly to 0.
        epochs_by_method: epochs per method, overriding `epochs` (CUT trains twice as long).
        steps_per_epoch: optimiser steps per epoch (None: max(|X|, |Y|) / batch, CycleGAN's
            epoch).
        collapse_threshold, collapse_steps: warn when every discriminator's loss stays below
            the threshold for this many consecutive steps.
        sample_every: write RUN/samples/step-N.png every this many steps (None: at the end only).
    """

    batch_size: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(200, ge=1)
    epochs_by_method: dict[str, int] = Field(default_factory=lambda: {"cut": 400})
    decay_share: float = Field(0.5, ge=0, le=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    checkpoint_every: int | None = Field(1000, ge=1)
    collapse_threshold: float = Field(0.01, ge=0)
    collapse_steps: int = Field(200, ge=1)
    sample_every: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _check_translate(self) -> TranslateTrainConfig:
        if self.gradient_accumulation != 1:
            raise ValueError("gradient_accumulation must be 1 for translation (GAN steps)")
        for method in self.epochs_by_method:
            _check_choice(method, TRANSLATION_METHODS, "epochs_by_method")
        return self

    def epochs_for(self, method: str) -> int:
        """The epochs of `method` (its entry of `epochs_by_method`, else `epochs`)."""
        return self.epochs_by_method.get(method, self.epochs)


class SegmenterModelConfig(StrictModel):
    """The vessel segmenter (`models.segmenter.VesselUNet`): Ronneberger et al.'s UNet with
    GroupNorm; one level per entry of `channels` (the paper's 64-128-256-512-1024 is five).

    Attributes:
        channels: width of each level; every level after the first halves the resolution.
        groups: GroupNorm groups, min(groups, width) at each level.
    """

    channels: tuple[int, ...] = (64, 128, 256, 512)
    groups: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SegmenterModelConfig:
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two or more widths >= 1, got {list(self.channels)}")
        for c in self.channels:
            if c % min(self.groups, c):
                raise ValueError(f"channels: {c} is not divisible by groups {self.groups}")
        return self

    @property
    def factor(self) -> int:
        """What image sides must be divisible by: 2 ** (levels - 1)."""
        return 2 ** (len(self.channels) - 1)


class SegmenterDataConfig(StrictModel):
    """The segmenter's training crops (frames at their stored size; whole frames of any size
    are segmented afterwards, the network being fully convolutional).

    Attributes:
        crop_size: side of the random training crops.
        flip: random horizontal and vertical flips of the crops.
    """

    crop_size: int = Field(256, ge=8)
    flip: bool = True


class SegmenterTrainConfig(TrainLoopConfig):
    """Segmenter training: AdamW on BCE with logits + `dice_weight` x soft Dice.

    Attributes:
        betas: AdamW's betas.
        dice_weight: weight of the soft Dice loss (1 - Dice of the probabilities over the batch).
        pos_weight: BCE weight of vessel pixels (None: 1; vessels are a few % of a frame).
        decay_share: the last share of the steps over which the lr decays linearly to 0.
    """

    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int | None = Field(100, ge=1)
    dice_weight: float = Field(1.0, ge=0)
    pos_weight: float | None = Field(None, gt=0)
    decay_share: float = Field(0.0, ge=0, le=1)
    checkpoint_every: int | None = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _check_segmenter(self) -> SegmenterTrainConfig:
        if self.gradient_accumulation != 1:
            raise ValueError("gradient_accumulation must be 1 for the segmenter")
        return self


class SegmenterConfig(StrictModel):
    """The vessel segmenter of CAS-GAN (the `segmenter:` section of configs/translate-*.yaml)."""

    model: SegmenterModelConfig = Field(default_factory=SegmenterModelConfig)
    data: SegmenterDataConfig = Field(default_factory=SegmenterDataConfig)
    train: SegmenterTrainConfig = Field(default_factory=SegmenterTrainConfig)

    @model_validator(mode="after")
    def _check_crop(self) -> SegmenterConfig:
        if self.data.crop_size % self.model.factor:
            raise ValueError(
                f"data.crop_size {self.data.crop_size} must be divisible by "
                f"{self.model.factor} (2 ** (len(model.channels) - 1))"
            )
        return self


class TranslateConfig(StrictModel):
    """A whole translation configuration (configs/translate-paper.yaml, translate-tiny.yaml)."""

    data: TranslateDataConfig = Field(default_factory=TranslateDataConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    cycle: CycleLossConfig = Field(default_factory=CycleLossConfig)
    cut: CUTLossConfig = Field(default_factory=CUTLossConfig)
    casgan: CASGANConfig = Field(default_factory=CASGANConfig)
    train: TranslateTrainConfig = Field(default_factory=TranslateTrainConfig)
    segmenter: SegmenterConfig = Field(default_factory=SegmenterConfig)

    @model_validator(mode="after")
    def _check_sizes(self) -> TranslateConfig:
        factor = 2**self.generator.n_downsampling
        if self.data.crop_size % factor:
            raise ValueError(
                f"data.crop_size {self.data.crop_size} must be divisible by {factor} "
                "(2 ** generator.n_downsampling)"
            )
        encoder = 4 + 3 * self.generator.n_downsampling + self.generator.n_blocks
        if max(self.cut.nce_layers) >= encoder:
            raise ValueError(
                f"cut.nce_layers {list(self.cut.nce_layers)} must index the generator's "
                f"{encoder} encoder layers"
            )
        return self


def _check_divisible(channels: tuple[int, ...], groups: int, where: str) -> None:
    for c in channels:
        if c % groups:
            raise ValueError(f"{where}: {c} channels are not divisible by norm_num_groups {groups}")


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
