"""Samplers of the reverse process: plain functions with one signature (:class:`Sampler`), and :func:`sample`."""

from .base import Callback, Denoiser, Generators, Levels, Sampler, SamplerStep, randn
from .ddpm import ancestral, ddim, ddim_sigma, ddim_step
from .karras import euler, euler_ancestral, heun
from .solvers import dpm_solver_2m, dpm_solver_2m_sde, dpm_solver_2s, dpm_solver_3m, unipc, unipc_bh1
from .run import SAMPLERS, SamplerName, default_spacing, plan, sample, steps_for_nfe
from .tuning import TunedSteps, reference_solve, tune_timesteps

__all__ = [
    "SAMPLERS",
    "Callback",
    "Denoiser",
    "Generators",
    "Levels",
    "Sampler",
    "SamplerName",
    "SamplerStep",
    "TunedSteps",
    "ancestral",
    "ddim",
    "ddim_sigma",
    "ddim_step",
    "default_spacing",
    "dpm_solver_2m",
    "dpm_solver_2m_sde",
    "dpm_solver_2s",
    "dpm_solver_3m",
    "euler",
    "euler_ancestral",
    "heun",
    "plan",
    "randn",
    "reference_solve",
    "sample",
    "steps_for_nfe",
    "tune_timesteps",
    "unipc",
    "unipc_bh1",
]
