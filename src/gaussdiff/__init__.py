"""gaussdiff: Denoising Diffusion Probabilistic Models and their family, exact to the math."""

from .diffusion.process import GaussianDiffusion, Likelihood, PosteriorEstimate
from .samplers.ddpm import SamplerStep, ancestral, ddim, sample
from .diffusion.schedule import NoiseSchedule
from .diffusion.timestep_sampling import LossSecondMomentSampler, UniformSampler

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
