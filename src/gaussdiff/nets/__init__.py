"""Networks only, each beside its config: no diffusion math lives here."""

from .autoencoder import Autoencoder, AutoencoderConfig, DiscriminatorConfig, PatchDiscriminator
from .classifier import ClassifierConfig, DomainClassifier
from .fast import Fast, Setup, bf16_supported, sampling_network
from .noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from .text import CaptionEncoder, TextEncoderConfig
from .unet import UNet, UNetConfig

__all__ = ["Autoencoder", "AutoencoderConfig", "CaptionEncoder", "ClassifierConfig", "DiscriminatorConfig",
           "DomainClassifier", "Fast", "NoisyClassifier", "NoisyClassifierConfig", "PatchDiscriminator", "Setup",
           "TextEncoderConfig", "UNet", "UNetConfig", "bf16_supported", "sampling_network"]
