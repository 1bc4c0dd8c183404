"""The math of Gaussian diffusion: schedules, the process, its losses and likelihoods. No weights, no I/O."""

from .likelihood import OdeLikelihood, RateDistortion, ode_likelihood, rate_distortion
from .oracle import GaussianMixture, OptimalDenoiser
from .process import (DiffusionConfig, GaussianDiffusion, Likelihood, Model, PosteriorEstimate, to_eps, to_prediction,
                      to_x0)
from .schedule import NoiseSchedule, extract
from .timestep_sampling import LossSecondMomentSampler, UniformSampler, make_timestep_sampler

__all__ = [
    "DiffusionConfig",
    "GaussianDiffusion",
    "GaussianMixture",
    "Likelihood",
    "LossSecondMomentSampler",
    "Model",
    "NoiseSchedule",
    "OdeLikelihood",
    "OptimalDenoiser",
    "PosteriorEstimate",
    "RateDistortion",
    "UniformSampler",
    "extract",
    "make_timestep_sampler",
    "ode_likelihood",
    "rate_distortion",
    "to_eps",
    "to_prediction",
    "to_x0",
]
