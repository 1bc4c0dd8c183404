"""A super-resolution stage measured on held-out images: PSNR and SSIM of its super-resolved images against
the ground truth, beside plain bilinear upsampling, and the super-resolved images for FID.

SSIM is Wang et al. 2004's: an 11x11 Gaussian window of standard deviation 1.5, K1 = 0.01, K2 = 0.03,
on [0, 255], averaged over pixels and channels (the window is cut at the border: valid positions only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..conditioning.guidance import GuidanceConfig
from ..conditioning.super_res import downsample, upsample
from ..data.datasets import to_model_range, to_uint8
from ..errors import ConfigError
from ..samplers.run import SamplerName
from ..training.run import Trained, check_images
from .generate import generate, super_res_condition, takes_labels, text_condition


def check_pair(metric: str, a: Tensor, b: Tensor) -> None:
    """Refuse two image sets that are not both ``uint8 [N, C, H, W]`` of one shape (a float image in [-1, 1] would
    be scored as nearly black, one image broadcast against all, another size fail deep in torch)."""
    if a.dtype != torch.uint8 or b.dtype != torch.uint8 or a.dim() != 4 or a.shape != b.shape:
        raise ValueError(f"{metric} compares uint8 [N, C, H, W] images of one shape, got {a.dtype} {list(a.shape)} "
                         f"and {b.dtype} {list(b.shape)}")


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio of ``uint8 [N, C, H, W]`` images, from the mean squared error over all of them."""
    check_pair("PSNR", a, b)
    mse = (a.double() - b.double()).pow(2).mean()
    return float(10 * torch.log10(255.0**2 / mse.clamp(min=1e-12)))


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity of ``uint8 [N, C, H, W]`` images (Wang et al. 2004, Eq. 13)."""
    check_pair("SSIM", a, b)
    x, y = a.double(), b.double()
    window = min(window, x.shape[-1], x.shape[-2])
    offsets = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    g = g / g.sum()
    C = x.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(C, 1, window, window)
    blur = lambda z: F.conv2d(z, kernel, groups=C)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass
class SuperResReport:
    """``n`` held-out images super-resolved from ``low`` to ``high`` pixels a side, with the augmentation level
    ``level``: PSNR (dB) and SSIM against the originals, and the same of plain bilinear upsampling."""

    n: int
    low: int
    high: int
    level: float
    psnr: float
    ssim: float
    psnr_bilinear: float
    ssim_bilinear: float


def evaluate_super_resolution(
    trained: Trained,
    images: Tensor,
    labels: Tensor | None = None,
    prompts: list[str] | None = None,
    sampler: SamplerName = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    batch_size: int = 256,
    cond_aug_level: float | None = None,
    progress: bool = True,
) -> tuple[SuperResReport, Tensor]:
    """Super-resolve the held-out ``images: uint8 [N, C, HIGH, HIGH]`` from their area-downsampled versions
    (with their labels or prompts when the stage takes them); the report and the super-resolved images."""
    stage = super_res_condition(trained)
    if stage is None:
        raise ConfigError("super-resolution is measured on a super-resolution stage (train --super-res), and this "
                          "run is not one")
    check_images(images, trained.image_shape, "the stage's")
    x = to_model_range(images)
    low = downsample(x, stage.low)
    out, _ = generate(trained, len(images), sampler, steps, seed=seed, batch_size=batch_size,
                      labels=labels if takes_labels(trained, GuidanceConfig()) else None, progress=progress,
                      prompts=prompts if text_condition(trained) is not None else None, low_res=low,
                      cond_aug_level=cond_aug_level)
    bilinear = to_uint8(upsample(low, images.shape[-2:]))
    level = trained.config.super_res.cond_aug_level if cond_aug_level is None else cond_aug_level
    report = SuperResReport(len(images), stage.low, images.shape[-1], level, psnr(out, images), ssim(out, images),
                            psnr(bilinear, images), ssim(bilinear, images))
    return report, out

