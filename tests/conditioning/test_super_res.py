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


def gaussian_taps(sigma, radius):
    """exp(-o^2 / (2 sigma^2)) at the offsets o = -radius..radius, normalised to sum to 1 (1D, float64)."""
    o = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (o / sigma) ** 2)
    return k / k.sum()


def test_blur_of_an_impulse_is_the_separable_gaussian_kernel():
    """A unit impulse in the middle of a 13 x 13 image blurs to k(i) k(j), k the Gaussian of the image's own sigma
    cut at the batch's radius ceil(3 max sigma) = 5 (for sigma 1.5) and normalised there; the other channel,
    zero, stays zero."""
    x = torch.zeros(2, 2, 13, 13, dtype=torch.float64)
    x[:, 0, 6, 6] = 1.0
    sigma = torch.tensor([0.7, 1.5], dtype=torch.float64)
    out = gaussian_blur(x, sigma)
    for b in range(2):
        k = torch.zeros(13, dtype=torch.float64)
        k[1:12] = gaussian_taps(sigma[b].item(), 5)
        torch.testing.assert_close(out[b, 0], k[:, None] * k[None, :], rtol=0, atol=1e-16)
        assert torch.equal(out[b, 1], torch.zeros(13, 13, dtype=torch.float64))


def test_blur_reflects_at_the_edges_without_repeating_the_edge_pixel():
    """Reflection about the edge pixel (x[-m] = x[m]): a line in column 1 is seen again at column -1, so row
    values are k(j - 1) + k(j + 1), twice k(1) at column 0; vertically the line is constant and stays so."""
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[..., 1] = 1.0
    out = gaussian_blur(x, torch.tensor([1.0], dtype=torch.float64))  # radius 3
    k = dict(zip(range(-3, 4), gaussian_taps(1.0, 3).tolist()))
    row = torch.tensor([k.get(j - 1, 0.0) + k.get(j + 1, 0.0) for j in range(9)], dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], row.expand(9, 9), rtol=0, atol=1e-16)


def test_blur_augmentation_blurs_each_example_by_the_level_it_reports():
    """``blur``'s level s is a sigma in low-resolution pixels: at sampling the fixed level, at training each
    example's own draw in [0, S], and the network is told the same s."""
    low = torch.rand(6, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    cond = LowResolution(8, "blur", 2.0)
    fixed = cond.augment(low, level=1.2)
    torch.testing.assert_close(fixed["low_res"], gaussian_blur(low, torch.full((6,), 1.2, dtype=torch.float64)))
    assert torch.allclose(fixed["low_res_level"], torch.full((6,), 1.2))
    drawn = cond.augment(low, torch.Generator().manual_seed(6))
    s = drawn["low_res_level"]
    assert s.unique().numel() == 6 and bool((s >= 0).all() and (s <= 2).all())
    # The level is reported in float32: the blur of its float64 draw differs from the reported one's by ~1e-8.
    torch.testing.assert_close(drawn["low_res"], gaussian_blur(low, s.double()), rtol=0, atol=1e-6)
    assert (drawn["low_res"] - low).abs().max() > 0.1


def test_a_gaussian_level_may_be_the_whole_forward_process():
    """A gaussian level is a cosine time in [0, 1], both ends included: s = 1 is the forward process's end."""
    SuperResConfig(super_res=14, cond_aug_max=1.0, cond_aug_level=1.0).check(28)


def test_a_sampling_level_the_augmentation_cannot_take_is_refused_when_augmenting():
    """``augment(level=)`` called directly took a negative sigma, NaN or a gaussian time past 1 and returned a
    corrupted image (or NaN) with that level reported to the network; it now applies the CLI's own check."""
    low = torch.zeros(2, 1, 4, 4)
    for cond_aug, level, message in [("gaussian", 1.5, "a gaussian augmentation level is a time in"),
                                     ("gaussian", float("nan"), "level"), ("blur", -0.5, "level")]:
        with pytest.raises(ConfigError, match=message):
            LowResolution(4, cond_aug, 0.5).augment(low, level=level)
    assert torch.equal(LowResolution(4, "blur", 0.5).augment(low, level=3.0)["low_res"], low)  # blur has no top
