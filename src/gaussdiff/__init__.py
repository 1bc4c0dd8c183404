"""gaussdiff: Denoising Diffusion Probabilistic Models and their family, exact to the math."""

from .diffusion import GaussianDiffusion, Likelihood, PosteriorEstimate
from .samplers import SamplerStep, ancestral, ddim, sample
from .schedule import NoiseSchedule
from .timestep_sampling import LossSecondMomentSampler, UniformSampler

__all__ = [
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
__version__ = "0.1.0"
