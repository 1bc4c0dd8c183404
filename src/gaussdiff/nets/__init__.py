"""Networks only, each beside its config: no diffusion math lives here."""

from .classifier import ClassifierConfig, DomainClassifier
from .fast import Fast, Setup, sampling_network
from .noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from .text import CaptionEncoder, TextEncoderConfig
from .unet import UNet, UNetConfig

__all__ = ["CaptionEncoder", "ClassifierConfig", "DomainClassifier", "Fast", "NoisyClassifier",
           "NoisyClassifierConfig", "Setup", "TextEncoderConfig", "UNet", "UNetConfig", "sampling_network"]
