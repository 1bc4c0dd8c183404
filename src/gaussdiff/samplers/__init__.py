"""Samplers of the reverse process: plain functions with one signature (:class:`Sampler`), and :func:`sample`."""

from .base import Callback, Sampler, SamplerStep
from .ddpm import ancestral, ddim, ddim_sigma, ddim_step
from .solvers import dpm_solver_2m
from .run import SAMPLERS, SamplerName, sample

__all__ = [
    "SAMPLERS",
    "Callback",
    "Sampler",
    "SamplerName",
    "SamplerStep",
    "ancestral",
    "ddim",
    "ddim_sigma",
    "ddim_step",
    "dpm_solver_2m",
    "sample",
]
