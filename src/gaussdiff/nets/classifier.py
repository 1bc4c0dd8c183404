"""A small CNN image classifier: the domain feature network for the built-in datasets' FID.

Like the LeNet features used for MNIST FID in the literature: trained once on the dataset's
labels, its penultimate activations (``features``, ``[B, feature_dim]``) stand in for Inception's
on 8x8 and 28x28 grey images, where Inception-v3 sees mostly upsampling artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch.nn.functional as F
import tyro
from torch import Tensor, nn


@dataclass(frozen=True)
class ClassifierConfig:
    """The domain classifier's shape: input channels and classes come from the data."""

    in_channels: Annotated[int, tyro.conf.Suppress] = 1
    num_classes: Annotated[int, tyro.conf.Suppress] = 10
    channels: int = 32
    """Width of the first two convolutions (the last two have twice as many)."""
    feature_dim: int = 128
    """Length of the feature vector that FID compares."""


class DomainClassifier(nn.Module):
    """conv-conv-maxpool-conv-conv, an average pool to 2x2, a feature layer, logits. ``x: [B, C, H, W]`` in [-1, 1]."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = c = config
        w = c.channels
        self.body = nn.Sequential(
            nn.Conv2d(c.in_channels, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.feature = nn.Linear(8 * w, c.feature_dim)
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``[B, feature_dim]``."""
        return F.silu(self.feature(self.body(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]``."""
        return self.head(self.features(x))
