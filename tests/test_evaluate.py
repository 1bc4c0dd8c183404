"""The Fréchet distance against closed forms, and the domain classifier's features."""

import pytest
import torch

from gaussdiff.evaluate import fid_from_features, frechet_distance


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
