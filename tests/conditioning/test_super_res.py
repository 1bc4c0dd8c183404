"""Super-resolution conditioning: area downsampling and bilinear upsampling, and conditioning augmentation
(its moments against q(z_s | x_low), its level 0, and the blur)."""

import math

import pytest
import torch

from gaussdiff.conditioning.super_res import (
    LowResolution,
    SuperResConfig,
    aug_alpha_bar,
    downsample,
    gaussian_augment,
    gaussian_blur,
    upsample,
)
from gaussdiff.data import ImageData
from gaussdiff.errors import ConfigError


@pytest.mark.parametrize("high, low", [(28, 14), (14, 7), (32, 16), (64, 32), (28, 7)])
def test_downsampling_then_upsampling_a_constant_image_is_exact(high, low):
    # Area averaging of a constant is that constant, and bilinear weights at 2x and 4x are dyadic (1/4,
    # 3/4, 1/8, ...), so their products with a dyadic constant are exact and sum to it exactly.
    x = torch.full((2, 3, high, high), -0.375, dtype=torch.float64)
    small = downsample(x, low)
    assert small.shape == (2, 3, low, low) and torch.equal(small, torch.full_like(small, -0.375))
    assert torch.equal(upsample(small, (high, high)), x)


def test_area_downsampling_is_the_block_mean():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    expected = x.reshape(1, 1, 2, 2, 2, 2).mean(dim=(3, 5))
    torch.testing.assert_close(downsample(x, 2), expected, rtol=0, atol=4 * torch.finfo(torch.float64).eps)


def test_the_cosine_level_schedule_starts_at_one_and_falls_to_zero():
    s = torch.tensor([0.0, 0.5, 1.0])
    ab = aug_alpha_bar(s)
    assert ab[0].item() == 1.0 and ab[2].item() < 1e-8 and 0 < ab[1].item() < 1
    # Eq. 17 of Nichol & Dhariwal at s = 0.5, computed here by hand.
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert abs(ab[1].item() - f(0.5) / f(0.0)) < 1e-15


def test_gaussian_augmentation_has_the_moments_of_q_and_level_zero_changes_nothing():
    # z_s | x_low ~ N(sqrt(ab) x_low, (1 - ab) I): over N draws the sample mean is within 6 standard errors
    # sqrt((1 - ab) / N) of sqrt(ab) x_low, and the sample variance within 6 sqrt(2 / N) (1 - ab) of 1 - ab.
    N = 20000
    x_low = torch.tensor([0.7, -0.2, 0.0], dtype=torch.float64).repeat(N, 1)
    s = torch.full((N,), 0.3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = gaussian_augment(x_low, s, torch.randn(x_low.shape, generator=g, dtype=torch.float64))
    ab = aug_alpha_bar(torch.tensor(0.3)).item()
    mean_err = (z.mean(0) - math.sqrt(ab) * x_low[0]).abs()
    assert bool((mean_err < 6 * math.sqrt((1 - ab) / N)).all())
    var_err = (z.var(0) - (1 - ab)).abs()
    assert bool((var_err < 6 * math.sqrt(2 / N) * (1 - ab)).all())
    zero = gaussian_augment(x_low[:5], torch.zeros(5, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64))
    assert torch.equal(zero, x_low[:5])


def test_blur_keeps_constants_and_the_mean_and_sigma_zero_is_the_identity():
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)
    out = gaussian_blur(x, sigma)
    assert torch.equal(out[0], x[0])
    # A normalised kernel keeps a constant image constant (to rounding), and blurring lowers the variance.
    const = torch.full((1, 1, 9, 9), 0.5, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(const, torch.tensor([1.0])), const, rtol=0, atol=1e-15)
    assert out[2].var() < out[1].var() < x[1].var() * 1.0 + 1e-12


def test_the_condition_reads_low_resolution_data_and_augments_it_reproducibly():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    cond = LowResolution(14, "gaussian", 0.5)
    low = cond.of_data(ImageData(images, None))
    assert low.shape == (4, 1, 14, 14) and cond.null(low) is low
    a = cond.augment(low, torch.Generator().manual_seed(3))
    b = cond.augment(low, torch.Generator().manual_seed(3))
    assert torch.equal(a["low_res"], b["low_res"]) and torch.equal(a["low_res_level"], b["low_res_level"])
    assert bool((a["low_res_level"] >= 0).all() and (a["low_res_level"] <= 0.5).all())
    # The network is told each example's level (Ho et al. 2022's conditioning on the augmentation level): the
    # level asked for when sampling, and at training the level each example was corrupted at.
    at = cond.augment(low, torch.Generator().manual_seed(3), level=0.3)
    assert torch.allclose(at["low_res_level"], torch.full((4,), 0.3))
    many = cond.augment(low.repeat(64, 1, 1, 1), torch.Generator().manual_seed(4))["low_res_level"]
    assert many.std() > 0.1 and many.min() < 0.1 and many.max() > 0.4  # uniform on [0, 0.5]: std 0.144
    fixed = cond.augment(low, torch.Generator().manual_seed(3), level=0.0)
    assert torch.equal(fixed["low_res"], low) and bool((fixed["low_res_level"] == 0).all())
    plain = LowResolution(14, "none").augment(low, torch.Generator().manual_seed(3))
    assert torch.equal(plain["low_res"], low)


def test_a_super_resolution_config_needs_a_lower_resolution():
    SuperResConfig(super_res=14).check(28)
    with pytest.raises(ConfigError, match="below the image size"):
        SuperResConfig(super_res=28).check(28)
    with pytest.raises(ConfigError, match=">= 0"):
        SuperResConfig(super_res=14, cond_aug_max=-1).check(28)
    with pytest.raises(ConfigError, match="at least 1"):
        SuperResConfig(super_res=0).check()
    # Levels need no image size (a dry run checks them): s is a time in [0, 1] for gaussian, a sigma for blur.
    SuperResConfig(super_res=14, cond_aug="blur", cond_aug_max=3.0).check()
    for bad in (float("nan"), float("inf"), 1.5):
        with pytest.raises(ConfigError, match="--cond-aug-level"):
            SuperResConfig(super_res=14, cond_aug_level=bad).check()
