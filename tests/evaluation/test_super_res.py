"""A super-resolution stage's figures: SSIM against Wang et al. 2004 written out by loops, PSNR in closed form,
and which images each figure measures, with a stand-in sampler."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gaussdiff.evaluation.super_res as sr
from gaussdiff.conditioning.super_res import LowResolution
from gaussdiff.data.datasets import to_model_range


def ssim_by_loops(a, b, window=11, sigma=1.5):
    """Wang et al. 2004 Eqs. 14-16 and 13 at every position where the whole window fits: Gaussian weights w
    (standard deviation sigma, summing to 1), mu = sum w x, sigma_x^2 = sum w (x - mu_x)^2, sigma_xy = sum w
    (x - mu_x)(y - mu_y); C1 = (K1 L)^2, C2 = (K2 L)^2 with K1 = 0.01, K2 = 0.03, L = 255; the mean over
    positions, channels and images."""
    x, y = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
    r = np.arange(window) - (window - 1) / 2
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    w /= w.sum()
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    N, C, H, W = x.shape
    for n in range(N):
        for c in range(C):
            for i in range(H - window + 1):
                for j in range(W - window + 1):
                    px, py = x[n, c, i : i + window, j : j + window], y[n, c, i : i + window, j : j + window]
                    mx, my = (w * px).sum(), (w * py).sum()
                    vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                    cxy = (w * (px - mx) * (py - my)).sum()
                    values.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
    return float(np.mean(values))


def test_ssim_matches_its_definition_written_out():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (2, 2, 14, 13), generator=g, dtype=torch.uint8)
    # b: a blurred, brightened, noisy copy, so that luminance, contrast and structure all differ.
    noise = torch.randint(-40, 41, a.shape, generator=g)
    b = ((a.double() * 0.6 + 60).round().long() + noise).clamp(0, 255).to(torch.uint8)
    assert sr.ssim(a, b) == pytest.approx(ssim_by_loops(a, b), rel=1e-12)
    assert sr.ssim(a, a) == pytest.approx(1.0, rel=1e-12)
    # Images smaller than the window take a window of their smaller side: 8 x 8 positions 1 x 1, 8 x 13 1 x 6,
    # 14 x 8 7 x 1.
    for h, w in ((8, 8), (8, 13), (14, 8)):
        small_a, small_b = a[..., :h, :w], b[..., :h, :w]
        assert sr.ssim(small_a, small_b) == pytest.approx(ssim_by_loops(small_a, small_b, 8), rel=1e-12)


def test_psnr_is_of_the_mean_squared_error_over_all_images():
    """One image off by 1 level everywhere and one by 3: MSE (1 + 9) / 2 = 5, PSNR 10 log10(255^2 / 5) dB."""
    a = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    b = a + torch.tensor([1, 3], dtype=torch.uint8)[:, None, None, None]
    assert sr.psnr(b, a) == pytest.approx(10 * math.log10(255**2 / 5), rel=1e-12)


@pytest.mark.parametrize("level", [None, 0.3])
def test_super_resolution_is_measured_against_the_ground_truth_beside_bilinear(monkeypatch, level):
    """Constant images: area-downsampling keeps them and bilinear upsampling restores them exactly (PSNR at its
    1e-12 MSE floor, 10 log10(255^2 / 1e-12); SSIM 1), while the stand-in stage returns each 1 level too bright:
    PSNR 20 log10(255) dB, SSIM (2 a (a + 1) + C1) / (a^2 + (a + 1)^2 + C1) per image of value a (no variance).
    The level reported is the one asked for, else the run's."""
    values = torch.tensor([40, 120, 200], dtype=torch.uint8)
    images = values[:, None, None, None].expand(3, 1, 8, 8).clone()
    seen = {}

    def fake_generate(trained, n, sampler, steps, **kwargs):
        seen.update(kwargs, n=n)
        return images + 1, None

    monkeypatch.setattr(sr, "generate", fake_generate)
    trained = SimpleNamespace(conditions=[LowResolution(4)], image_shape=(1, 8, 8), config=SimpleNamespace(
        super_res=SimpleNamespace(cond_aug_level=0.2)))
    report, out = sr.evaluate_super_resolution(trained, images, cond_aug_level=level, progress=False)
    assert torch.equal(out, images + 1) and seen["n"] == 3 and seen["cond_aug_level"] == level
    torch.testing.assert_close(seen["low_res"], to_model_range(images[..., :4, :4]), rtol=0, atol=1e-6)
    assert (report.n, report.low, report.high, report.level) == (3, 4, 8, 0.2 if level is None else 0.3)
    assert report.psnr == pytest.approx(20 * math.log10(255), rel=1e-12)
    assert report.psnr_bilinear == pytest.approx(10 * math.log10(255**2 / 1e-12), rel=1e-12)
    a, C1 = values.double(), (0.01 * 255) ** 2
    assert report.ssim == pytest.approx(((2 * a * (a + 1) + C1) / (a**2 + (a + 1) ** 2 + C1)).mean().item(), rel=1e-12)
    assert report.ssim_bilinear == pytest.approx(1.0, rel=1e-12)


def test_what_super_resolution_cannot_measure_is_refused_before_sampling(monkeypatch):
    """A base run failed an assert; images of another size failed after sampling, in PSNR's broadcast; float
    images were scored silently (as nearly black); PSNR broadcast one image against all."""
    from gaussdiff.errors import ConfigError

    monkeypatch.setattr(sr, "generate", lambda *a, **k: pytest.fail("sampled"))
    stage = SimpleNamespace(conditions=[LowResolution(4)], image_shape=(1, 8, 8))
    with pytest.raises(ConfigError, match="this run is not one"):
        sr.evaluate_super_resolution(SimpleNamespace(conditions=[]), torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    for images in (torch.zeros(2, 1, 16, 16, dtype=torch.uint8), torch.zeros(2, 1, 8, 8)):
        with pytest.raises(ValueError, match=r"images must be uint8 \[N, 1, 8, 8\] \(the stage's\)"):
            sr.evaluate_super_resolution(stage, images)
    a = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    for metric in (sr.psnr, sr.ssim):
        with pytest.raises(ValueError, match=r"compares uint8 \[N, C, H, W\] images of one shape"):
            metric(a, a[:1])
