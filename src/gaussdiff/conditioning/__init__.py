"""Wrappers and conditions that keep ``model(x_t, t, **cond)``: guidance, and what a model is conditioned on
(class labels, text prompts, a super-resolution stage's low-resolution images, latents)."""

from .conditions import ClassLabel, Condition, ConditioningConfig, drop_conditions, null_conditions
from .guidance import (
    PAIRED_MODE,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    GuidanceConfig,
    classifier_log_prob_grad,
    guide,
)
from .latent import LatentConfig, LatentSpace
from .super_res import LowResolution, SuperResConfig
from .text import TextPrompt, Tokenizer

__all__ = [
    "PAIRED_MODE",
    "ClassLabel",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "Condition",
    "ConditioningConfig",
    "GuidanceConfig",
    "LatentConfig",
    "LatentSpace",
    "LowResolution",
    "SuperResConfig",
    "TextPrompt",
    "Tokenizer",
    "classifier_log_prob_grad",
    "drop_conditions",
    "guide",
    "null_conditions",
]
