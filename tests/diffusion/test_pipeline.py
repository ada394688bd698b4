"""Sampling from a trained run: determinism, batch independence, guidance, prompts."""

from __future__ import annotations

import pytest
import torch

from angiosynth.conditions import condition_prompt
from angiosynth.diffusion.pipeline import LatentDiffusion, ModelRunError, model_hash
from angiosynth.diffusion.schedulers import sampling_scheduler
from angiosynth.models.text_encoder import UnknownWordError
from conftest import DiffusionData

AC_A, PC_B = condition_prompt("AC A"), condition_prompt("PC B")


@pytest.fixture(scope="module")
def model(diffusion_data: DiffusionData) -> LatentDiffusion:
    return LatentDiffusion.load(diffusion_data.ldm_run)


def test_load_reads_the_run(model: LatentDiffusion, diffusion_data: DiffusionData):
    assert model.config.data.image_size == 32 and model.config.latent_size == 8
    assert model.scale_factor != 1.0
    assert model.model_hash == model_hash(diffusion_data.ldm_run) and len(model.model_hash) == 16


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(ModelRunError, match=r"missing config\.yaml"):
        LatentDiffusion.load(tmp_path)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp"])
def test_same_seed_same_images_in_any_batch(model: LatentDiffusion, sampler: str):
    both = model.sample([AC_A, PC_B], [3, 4], sampler, steps=5, guidance=2.0)
    alone = model.sample([PC_B], [4], sampler, steps=5, guidance=2.0)
    again = model.sample([AC_A, PC_B], [3, 4], sampler, steps=5, guidance=2.0)

    assert both.shape == (2, 1, 32, 32) and both.min() >= 0 and both.max() <= 1
    torch.testing.assert_close(both[1], alone[0], atol=1e-5, rtol=0)
    assert torch.equal(both, again)
    assert not torch.equal(both, model.sample([AC_A, PC_B], [5, 6], sampler, 5, 2.0))


def test_guidance_one_is_the_conditional_model(model: LatentDiffusion):
    """With g = 1 the sample equals a DDIM loop over the conditional prediction alone."""
    images = model.sample([PC_B], [7], "ddim", steps=4, guidance=1.0)

    scheduler = sampling_scheduler("ddim", model.config.diffusion)
    scheduler.set_timesteps(4)
    latents = torch.randn((1, 3, 8, 8), generator=torch.Generator().manual_seed(7))
    ids, mask = model.tokenizer.encode([PC_B])
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model.denoiser(latents, t.expand(1), ids, mask)
            latents = scheduler.step(eps, t, latents).prev_sample
    torch.testing.assert_close(images, model.decode(latents), atol=1e-5, rtol=0)


def test_guidance_changes_the_output(model: LatentDiffusion):
    plain = model.sample([AC_A], [1], "ddim", steps=4, guidance=1.0)
    guided = model.sample([AC_A], [1], "ddim", steps=4, guidance=3.0)
    assert (plain - guided).abs().max() > 1e-4


def test_prompts_change_the_output(model: LatentDiffusion):
    a = model.sample([AC_A], [1], "ddim", steps=4)
    b = model.sample([PC_B], [1], "ddim", steps=4)
    assert (a - b).abs().max() > 1e-5


def test_unknown_prompt_word_is_named(model: LatentDiffusion):
    with pytest.raises(UnknownWordError, match="'lateral'"):
        model.sample(["This is a lateral DSA scan"], [0], "ddim", steps=2)


def test_prompts_and_seeds_must_pair(model: LatentDiffusion):
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        model.sample([AC_A, PC_B], [0], "ddim", steps=2)
