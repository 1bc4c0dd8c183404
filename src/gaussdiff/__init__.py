"""gaussdiff: Denoising Diffusion Probabilistic Models and their family, exact to the math.

The rooms (see docs/architecture.md): :mod:`gaussdiff.diffusion` (the math), :mod:`gaussdiff.samplers`,
:mod:`gaussdiff.conditioning`, :mod:`gaussdiff.nets`, :mod:`gaussdiff.data`, :mod:`gaussdiff.training`,
:mod:`gaussdiff.evaluation`, :mod:`gaussdiff.viz` and :mod:`gaussdiff.cli`.
"""

from .diffusion import DiffusionConfig, GaussianDiffusion, Likelihood, LossSecondMomentSampler, NoiseSchedule
from .diffusion import PosteriorEstimate, UniformSampler
from .samplers import SamplerStep, ancestral, ddim, sample

__all__ = [
    "DiffusionConfig",
    "GaussianDiffusion",
    "Likelihood",
    "LossSecondMomentSampler",
    "NoiseSchedule",
    "PosteriorEstimate",
    "SamplerStep",
    "UniformSampler",
    "ancestral",
    "ddim",
    "sample",
]
__version__ = "0.2.0"
