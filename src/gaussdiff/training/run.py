"""A trained run, loaded to sample or measure: its network (EMA weights by default), diffusion and config,
and for a latent run the autoencoder that maps between its latents and pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..conditioning.conditions import Condition
from ..conditioning.latent import LatentSpace
from ..data.datasets import to_model_range, to_uint8
from ..diffusion.process import GaussianDiffusion
from ..errors import CheckpointError
from ..nets.unet import UNet
from .checkpoint import (load_checkpoint_config, load_state_dict_strict, load_weights, newest_intact,
                         resolve_checkpoint, verify_checkpoint)
from .config import RunConfig
from .interop import is_diffusers_folder, load_diffusers
from .latent import load_latent_space


@dataclass
class Trained:
    """A trained model ready to sample: network (eval mode), diffusion, the run's config, its checkpoint,
    and its latent space (None for a pixel-space run)."""

    model: UNet
    diffusion: GaussianDiffusion
    config: RunConfig
    checkpoint: Path
    latent: LatentSpace | None = None
    source: str = "gaussdiff"
    """``gaussdiff`` (a run directory or checkpoint), or ``diffusers`` (a folder read by :mod:`.interop`)."""
    clip: bool | None = None
    """Whether sampling clips x0 estimates to [-1, 1] (None: in pixel space yes, in latent space no)."""
    spacing: str = "linspace"
    """A diffusers folder's scheduler spacing, which ``--timesteps auto`` takes for it; gaussdiff runs take
    :func:`~gaussdiff.samplers.run.default_spacing` (trailing for DPM-Solver++ and UniPC, else linspace)."""

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """What the model takes besides (x_t, t)."""
        return self.config.conditions()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the model denoises: images, or latents."""
        m = self.config.model
        return m.in_channels, m.image_size, m.image_size

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images :meth:`images_of` gives: the data's, decoded from latents for a latent run."""
        d = self.config.data
        return d.image_channels, d.image_size, d.image_size

    @property
    def clip_denoised(self) -> bool:
        """Clip x0 estimates to [-1, 1]: the range of images, not of latents (a diffusers model: as its scheduler
        config says)."""
        return self.latent is None if self.clip is None else self.clip

    def x0_of(self, images: Tensor) -> Tensor:
        """``uint8 [N, C, H, W]`` images -> what the diffusion runs on (on the model's device): pixels in
        [-1, 1], or their latents. Other images are refused (a float image or one of another size would be
        measured silently: the network is convolutional)."""
        check_images(images, self.image_shape, "this run's")
        x = to_model_range(images).to(self.device)
        return x if self.latent is None else self.latent.encode(x)

    def images_of(self, x0: Tensor) -> Tensor:
        """Samples of the diffusion -> ``uint8 [N, C, H, W]`` images (decoded for a latent run), on CPU."""
        return to_uint8(x0 if self.latent is None else self.latent.decode(x0)).cpu()


def check_images(images: Tensor, shape: tuple[int, int, int], whose: str) -> None:
    """Refuse images other than ``uint8 [N, *shape]`` (``whose`` shape: a run's, a stage's), naming what was given."""
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"images must be uint8 [N, {', '.join(map(str, shape))}] ({whose}), got {images.dtype} "
                         f"{list(images.shape)}")


def load_trained(path: Path | str, ema: bool = True, device: torch.device | str = "cpu") -> Trained:
    """Load a run directory (its newest checkpoint) or a checkpoint directory, EMA weights by default; or a
    diffusers pipeline or UNet2DModel folder (:mod:`.interop`, which has only the weights it was saved with)."""
    path = Path(path)
    if path.is_dir() and is_diffusers_folder(path):
        net, diffusion, config, meaning = load_diffusers(path, device)
        return Trained(net, diffusion, config, path, None, source="diffusers", clip=meaning["clip"],
                       spacing=meaning["spacing"])
    checkpoint = resolve_checkpoint(path)
    weights = "ema" if ema else "model"
    # The files read here, as written: a flipped bit would otherwise sample from silently altered weights.
    read = ("config.json", f"{weights}.safetensors")
    try:
        verify_checkpoint(checkpoint, read)
    except CheckpointError as e:
        hint = ""
        if checkpoint != path:  # a run directory: name the newest checkpoint whose files read here are intact
            try:
                hint = f"; pass an older checkpoint that is intact: {newest_intact(path, read)}"
            except CheckpointError:
                pass
        raise CheckpointError(f"{e}{hint}") from None
    config = load_checkpoint_config(checkpoint)
    model = UNet(config.model)
    load_state_dict_strict(model, load_weights(checkpoint, weights), checkpoint)
    latent = None
    if config.latent.latent is not None:
        latent, _, _ = load_latent_space(config.latent.latent, device, config.latent.latent_sha256)
    return Trained(model.to(device).eval(), config.diffusion.build(), config, checkpoint, latent)
