"""A trained run, loaded to sample or measure: its network (EMA weights by default), diffusion and config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..conditioning.conditions import Condition
from ..diffusion.process import GaussianDiffusion
from ..nets.unet import UNet
from .checkpoint import load_checkpoint_config, load_state_dict_strict, load_weights, resolve_checkpoint
from .config import RunConfig


@dataclass
class Trained:
    """A trained model ready to sample: network (eval mode), diffusion, the run's config, its checkpoint."""

    model: UNet
    diffusion: GaussianDiffusion
    config: RunConfig
    checkpoint: Path

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """What the model takes besides (x_t, t)."""
        return self.config.conditions()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_trained(path: Path, ema: bool = True, device: torch.device | str = "cpu") -> Trained:
    """Load a run directory (its newest checkpoint) or a checkpoint directory, EMA weights by default."""
    checkpoint = resolve_checkpoint(path)
    config = load_checkpoint_config(checkpoint)
    model = UNet(config.model)
    load_state_dict_strict(model, load_weights(checkpoint, ema=ema), checkpoint)
    return Trained(model.to(device).eval(), config.diffusion.build(), config, checkpoint)
