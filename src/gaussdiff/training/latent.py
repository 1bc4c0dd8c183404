"""A finished autoencoder run, loaded as the latent space of a diffusion run (:mod:`gaussdiff.conditioning.latent`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..conditioning.latent import LatentSpace
from ..data.datasets import ImageData
from ..errors import CheckpointError, ConfigError
from ..nets.autoencoder import Autoencoder
from .checkpoint import load_state_dict_strict, load_weights
from .config import AutoencoderTrainConfig, load_config


def weights_sha256(run: Path) -> str:
    return hashlib.sha256((run / "autoencoder.safetensors").read_bytes()).hexdigest()


def load_latent_space(run: Path | str, device: torch.device | str = "cpu",
                      sha256: str | None = None) -> tuple[LatentSpace, AutoencoderTrainConfig, str]:
    """A finished autoencoder run as a :class:`LatentSpace`, its config and the sha256 of its weights;
    with ``sha256``, an autoencoder whose weights changed since is refused."""
    run = Path(run)
    files = [run / "autoencoder.safetensors", run / "latent.json", run / "config.json"]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise CheckpointError(f"{run}: not a finished autoencoder run (no {missing[0]}; train it with "
                              "gaussdiff train-autoencoder)")
    config = load_config(run / "config.json", AutoencoderTrainConfig)
    digest = weights_sha256(run)
    if sha256 is not None and digest != sha256:
        raise CheckpointError(f"{run}: the autoencoder's weights changed since this run was trained on its latents")
    model = Autoencoder(config.autoencoder)
    load_state_dict_strict(model, load_weights(run, "autoencoder"), run / "autoencoder.safetensors")
    try:
        scale = float(json.loads((run / "latent.json").read_text())["scale"])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{run / 'latent.json'}: no latent scale ({e})") from None
    return LatentSpace(model.to(device).eval(), scale), config, digest


def check_autoencoder_fits(run: Path, config: AutoencoderTrainConfig, data: ImageData) -> None:
    """The autoencoder of ``run`` must have been trained on images of ``data``'s size and channels."""
    ae = config.autoencoder
    if (ae.in_channels, ae.image_size) != (data.shape[0], data.shape[-1]):
        raise ConfigError(f"{run}: an autoencoder of {ae.in_channels}-channel {ae.image_size}x{ae.image_size} images, "
                          f"and the data has {data.shape[0]}-channel {data.shape[-1]}x{data.shape[-1]} images")
