"""The DDPM schedule and the samplers follow CompVis' conventions."""

from __future__ import annotations

import numpy as np
import pytest

from angiosynth.config import DiffusionConfig
from angiosynth.diffusion.schedulers import sampling_scheduler, training_scheduler

PAPER = DiffusionConfig()


def test_betas_are_compvis_linear():
    expected = np.linspace(np.sqrt(0.0015), np.sqrt(0.0195), 1000) ** 2
    betas = training_scheduler(PAPER).betas.double().numpy()
    np.testing.assert_allclose(betas, expected, rtol=1e-6)
    assert not np.allclose(betas, np.linspace(0.0015, 0.0195, 1000))


def test_training_scheduler_does_not_clip():
    config = training_scheduler(PAPER).config
    assert config.clip_sample is False and config.prediction_type == "epsilon"
    assert config.num_train_timesteps == 1000


def test_ddim_follows_compvis():
    ddim = sampling_scheduler("ddim", PAPER)
    assert ddim.config.clip_sample is False
    assert ddim.config.set_alpha_to_one is False
    assert ddim.config.steps_offset == 1
    ddim.set_timesteps(50)
    # CompVis' uniform DDIM timesteps: range(0, 1000, 20) + 1, from the last
    np.testing.assert_array_equal(ddim.timesteps.numpy(), np.arange(0, 1000, 20)[::-1] + 1)


def test_dpm_solver_plus_plus_settings():
    dpm = sampling_scheduler("dpmpp", PAPER)
    assert dpm.config.algorithm_type == "dpmsolver++" and dpm.config.solver_order == 2
    assert dpm.config.steps_offset == 1 and dpm.config.thresholding is False
    np.testing.assert_allclose(dpm.betas.numpy(), training_scheduler(PAPER).betas.numpy())


def test_ddpm_sampler_is_the_training_schedule():
    ddpm = sampling_scheduler("ddpm", PAPER)
    assert ddpm.config.clip_sample is False
    ddpm.set_timesteps(1000)
    assert ddpm.timesteps[0] == 999 and ddpm.timesteps[-1] == 0


def test_unknown_sampler():
    with pytest.raises(ValueError, match="ddpm, ddim, dpmpp"):
        sampling_scheduler("euler", PAPER)
