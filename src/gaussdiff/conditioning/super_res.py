"""Super-resolution as a condition: p(x_high | x_low), the stages of a cascade (Ho et al. 2022, "Cascaded
Diffusion Models for High Fidelity Image Generation"; ADM's ``SuperResModel``, Dhariwal & Nichol 2021).

The low-resolution image ``x_low: [B, C, LOW, LOW]`` in [-1, 1] is the training image downsampled by
area averaging (:func:`downsample`); the U-Net upsamples it bilinearly to the output's size and
concatenates it to x_t (:mod:`gaussdiff.nets.unet`).

**Conditioning augmentation** (Ho et al. 2022) corrupts x_low in training so that a stage
tolerates the imperfect samples of the stage before; the network is told the level s through an
embedding added to the timestep embedding, and sampling fixes s (``--cond-aug-level``):

- ``gaussian``: z = sqrt(alpha_bar(s)) x_low + sqrt(1 - alpha_bar(s)) eps, the forward process at
  continuous time s in [0, 1] of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17), s drawn
  uniformly in [0, S] per example ("non-truncated"); s = 0 leaves x_low unchanged.
- ``blur``: a Gaussian blur of standard deviation s (in low-resolution pixels), s uniform in [0, S].
- ``none``: x_low as it is (s = 0).

Notation: x_low -> ``low_res``; s -> ``low_res_level: [B]``; S -> ``cond_aug_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.datasets import ImageData, to_model_range
from ..errors import ConfigError, check_finite_at_least_zero
from ..nets.unet import upsample_bilinear

CondAug = Literal["gaussian", "blur", "none"]
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's s in Eq. 17, which keeps beta finite near t = 0


def downsample(x: Tensor, size: int) -> Tensor:
    """``[B, C, H, W] -> [B, C, size, size]`` by area averaging (each output pixel the mean of the input
    pixels it covers, fractions weighted): antialiased, and a constant image stays exactly constant."""
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="area")


def upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """The U-Net's bilinear upsampling of the condition (:func:`gaussdiff.nets.unet.upsample_bilinear`)."""
    return upsample_bilinear(x, size)


def aug_alpha_bar(s: Tensor) -> Tensor:
    """alpha_bar(s) of the continuous cosine schedule, s in [0, 1] (Nichol & Dhariwal 2021, Eq. 17), in float64;
    alpha_bar(0) = 1 exactly."""
    f = lambda u: torch.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2  # noqa: E731
    s = s.double()
    return (f(s) / f(torch.zeros_like(s))).clamp(0.0, 1.0)


def gaussian_augment(x_low: Tensor, s: Tensor, noise: Tensor) -> Tensor:
    """z_s = sqrt(alpha_bar(s)) x_low + sqrt(1 - alpha_bar(s)) eps: a draw of q(z_s | x_low), ``s: [B]``."""
    ab = aug_alpha_bar(s).reshape(-1, *([1] * (x_low.dim() - 1)))
    return (ab.sqrt() * x_low.double() + (1 - ab).sqrt() * noise.double()).to(x_low.dtype)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Each image of ``x: [B, C, H, W]`` blurred with its own standard deviation ``sigma: [B]`` (pixels; 0: none),
    a separable kernel of radius ceil(3 max sigma) (at most the image's side - 1), reflected at the edges."""
    radius = int(math.ceil(3 * float(sigma.max()))) if len(sigma) else 0
    if radius == 0:
        return x
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float64)
    sig = sigma.to(x.device, torch.float64).clamp(min=1e-12)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / sig) ** 2)
    kernel = torch.where(sigma.to(x.device)[:, None] > 0, kernel, (offsets[None] == 0).double())  # sigma 0: a delta
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(x.dtype)  # [B, K]
    B, C, H, W = x.shape
    # Grouped convolutions with one kernel per image: fold the batch into the channels.
    k = kernel.repeat_interleave(C, dim=0)[:, None]  # [B C, 1, K]
    h = F.pad(x.reshape(1, B * C, H, W), (radius, radius, 0, 0), mode="reflect")
    h = F.conv2d(h, k[:, :, None, :], groups=B * C)
    h = F.pad(h, (0, 0, radius, radius), mode="reflect")
    h = F.conv2d(h, k[:, :, :, None], groups=B * C)
    return h.reshape(B, C, H, W)


@dataclass(frozen=True)
class SuperResConfig:
    """A super-resolution stage: what it upsamples from, and how its condition is augmented."""

    super_res: int | None = None
    """LOW: train p(x | x downsampled to LOW x LOW), a super-resolution stage (None: a base model)."""
    cond_aug: CondAug = "gaussian"
    """Conditioning augmentation in training: ``gaussian`` (the forward process at a level s), ``blur``, ``none``."""
    cond_aug_max: float = 0.5
    """S: training levels s are uniform in [0, S] (gaussian: cosine time in [0, 1]; blur: sigma in pixels)."""
    cond_aug_level: float = 0.0
    """The level s that sampling uses unless told otherwise: 0, the condition as given (the best level moved
    between two trainings of one stage in docs/cascade.md's sweeps: sweep it on yours)."""

    def conditions(self) -> tuple[LowResolution, ...]:
        """The low-resolution condition of a super-resolution stage (none for a base model)."""
        if self.super_res is None:
            return ()
        return (LowResolution(self.super_res, self.cond_aug, self.cond_aug_max),)

    def check(self, high: int | None = None) -> None:
        """Refuse a LOW that is not below the image size ``high`` (None: not known yet) and levels out of range."""
        if self.super_res is None:
            return
        if self.super_res < 1:
            raise ConfigError(f"--super-res {self.super_res} must be at least 1")
        if high is not None and self.super_res >= high:
            raise ConfigError(f"--super-res {self.super_res} must be below the image size {high}")
        check_level("--cond-aug-max", self.cond_aug_max, self.cond_aug)
        check_level("--cond-aug-level", self.cond_aug_level, self.cond_aug)


def check_level(option: str, level: float, cond_aug: CondAug) -> None:
    """Refuse an augmentation level s that is NaN, infinite or negative, or, for ``gaussian``, past the forward
    process's end: there s is a cosine time in [0, 1] (blur's is a sigma in pixels, without a top)."""
    check_finite_at_least_zero(option, level)
    if cond_aug == "gaussian" and level > 1:
        raise ConfigError(f"{option} {level:g}: a gaussian augmentation level is a time in [0, 1]")


@dataclass(frozen=True)
class LowResolution:
    """The condition ``low_res: [B, C, LOW, LOW]`` (and its augmentation level ``low_res_level: [B]``).

    Its null is itself: guidance steers the class or the prompt, and both branches see the same image.
    """

    low: int
    cond_aug: CondAug = "gaussian"
    cond_aug_max: float = 0.5
    p_drop: float = 0.0
    key: str = "low_res"
    noun: str = "low-resolution images"

    from_pixels = True
    """Computed from each example's pixels (:meth:`of_images`): a trainer derives it from every step's decoded,
    flipped, cropped batch, so that it streams and always matches the image the network denoises."""

    def null(self, value: Tensor) -> Tensor:
        return value

    def of_images(self, x: Tensor) -> Tensor:
        """``x: [B, C, H, W]`` in [-1, 1] -> the condition ``[B, C, LOW, LOW]``."""
        return downsample(x, self.low)

    def of_data(self, data: ImageData) -> Tensor:
        return self.of_images(to_model_range(data.images))

    def examples(self, n: int, device: torch.device | str) -> Tensor | None:
        return None  # previews take the data's own low-resolution images

    @property
    def per_row(self) -> int:
        return 8

    def example_names(self, n: int) -> list[str]:
        return []

    def augment(self, value: Tensor, generator: torch.Generator | None = None,
                level: float | None = None) -> dict[str, Tensor]:
        """The model's keywords for ``value``: corrupted at a level s per example, uniform in [0, S] (training)
        or fixed at ``level`` (sampling); the noise from ``generator`` (CPU), so that runs repeat."""
        B = len(value)
        if level is not None:
            check_level("level", level, self.cond_aug)
        if self.cond_aug == "none":
            s = torch.zeros(B, dtype=torch.float64)
        elif level is not None:
            s = torch.full((B,), float(level), dtype=torch.float64)
        else:
            s = torch.rand(B, generator=generator, dtype=torch.float64) * self.cond_aug_max
        if self.cond_aug == "gaussian":
            noise = torch.randn(value.shape, generator=generator).to(value.device)
            value = gaussian_augment(value, s.to(value.device), noise)
        elif self.cond_aug == "blur":
            value = gaussian_blur(value, s.to(value.device))
        return {self.key: value, "low_res_level": s.to(value.device, torch.float32)}
