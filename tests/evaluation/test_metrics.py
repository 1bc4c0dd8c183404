"""FID against closed forms and real-vs-real splits; KID's unbiasedness; precision and recall on known sets."""

import pytest
import torch

from gaussdiff.evaluation.metrics import fid_from_features, frechet_distance, kernel_inception_distance, precision_recall


def random_spd(d, g):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    d = 6
    mu1, mu2 = torch.randn(2, d, generator=g, dtype=torch.float64)
    # Diagonal covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    a, b = torch.rand(2, d, generator=g, dtype=torch.float64) + 0.1
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected.item(), rel=1e-10)
    # S2 = c S1 commutes with S1: the trace term is (1 - sqrt(c))^2 tr S1.
    s1 = random_spd(d, g)
    assert frechet_distance(mu1, s1, mu1, 4.0 * s1) == pytest.approx(s1.trace().item(), rel=1e-9)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_frechet_distance_matches_scipy_sqrtm_for_non_commuting_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    s1, s2 = random_spd(5, g), random_spd(5, g)
    mu1, mu2 = torch.randn(2, 5, generator=g, dtype=torch.float64)
    root = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = ((mu1 - mu2) ** 2).sum().item() + (s1.trace() + s2.trace()).item() - 2 * float(root.trace())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_samples_is_small_for_one_distribution_and_large_for_two():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 4000, 4, generator=g, dtype=torch.float64)
    shifted = torch.randn(4000, 4, generator=g, dtype=torch.float64) + 1.0
    assert fid_from_features(a, b) < 0.02
    assert fid_from_features(a, shifted) == pytest.approx(4.0, rel=0.05)


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 600, 8, generator=g, dtype=torch.float64)
    mean, std = kernel_inception_distance(a, b, subsets=50, subset_size=300)
    # Unbiased MMD^2: zero in expectation, so within a few standard errors of 0 (it can be negative).
    assert abs(mean) < 4 * std / 50**0.5 + 1e-3
    shifted, _ = kernel_inception_distance(a, b + 0.5, subsets=50, subset_size=300)
    assert shifted > 20 * max(std, 1e-4)


def test_precision_and_recall_on_known_sets():
    g = torch.Generator().manual_seed(4)
    left = torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 - 3
    right = torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 + 3
    real = torch.cat([left, right])
    same = torch.cat([torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 - 3,
                      torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 + 3])
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    # Samples from one of the two modes only: every sample is realistic, half the data is missed.
    p, r = precision_recall(real, torch.randn(1000, 2, generator=g, dtype=torch.float64) * 0.1 - 3)
    assert p > 0.9 and abs(r - 0.5) < 0.05
    p, r = precision_recall(real, torch.randn(1000, 2, generator=g, dtype=torch.float64) * 0.1 + 10)
    assert p == 0.0 and r == 0.0
