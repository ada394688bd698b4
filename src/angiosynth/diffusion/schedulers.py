"""The DDPM noise schedule and the samplers, with CompVis' conventions (SPEC.md "Models").

diffusers' defaults differ from CompVis' in ways that change images: `clip_sample` is True in
DDPM/DDIM, `set_alpha_to_one` is True in DDIM and `steps_offset` is 0. Every scheduler here is
built from the training configuration with those set as CompVis does.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin

from angiosynth.config import SAMPLERS, DiffusionConfig


def _schedule(config: DiffusionConfig) -> dict:
    return {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_start": config.beta_start,
        "beta_end": config.beta_end,
        "beta_schedule": config.beta_schedule,
        "prediction_type": config.prediction_type,
    }


def training_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """The forward process q(x_t | x_0) used in training (and by ancestral DDPM sampling)."""
    return DDPMScheduler(**_schedule(config), clip_sample=False, variance_type="fixed_small")


def sampling_scheduler(name: str, config: DiffusionConfig) -> SchedulerMixin:
    """A sampler over the trained schedule.

    Args:
        name: "ddpm" (ancestral, the paper's), "ddim" (eta 0) or "dpmpp" (DPM-Solver++ 2M).
        config: the schedule the model was trained with.
    """
    if name == "ddpm":
        return training_scheduler(config)
    if name == "ddim":
        return DDIMScheduler(
            **_schedule(config), clip_sample=False, set_alpha_to_one=False, steps_offset=1
        )
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(
            **_schedule(config), algorithm_type="dpmsolver++", solver_order=2, steps_offset=1,
            timestep_spacing="leading", lower_order_final=True,
        )  # fmt: skip
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
