"""Networks only, each beside its config: no diffusion math lives here."""

from .classifier import ClassifierConfig, DomainClassifier
from .noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from .unet import UNet, UNetConfig

__all__ = ["ClassifierConfig", "DomainClassifier", "NoisyClassifier", "NoisyClassifierConfig", "UNet", "UNetConfig"]
