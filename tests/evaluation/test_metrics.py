"""FID against closed forms and real-vs-real splits; KID's unbiasedness; precision and recall on known sets."""

import math

import pytest
import torch

from gaussdiff.evaluation.metrics import (fid_from_features, frechet_distance, kernel_inception_distance,
                                          precision_recall)

EPS = torch.finfo(torch.float64).eps  # 2 u: one correctly rounded float64 operation errs by at most u = EPS / 2


def random_spd(d, g):
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def fid_rounding(mu1, s1, mu2, s2):
    """A bound on the float64 error of frechet_distance (and of another backward-stable evaluation of it).

    eigh is backward stable (LAPACK: the eigenvalues of A + E, |E| <= d u |A|): sqrtm(s1), the products and the
    eigenvalues of sqrt(s1) s2 sqrt(s1) each move those eigenvalues lambda_i (of s1 s2) by at most
    d u |s1| |s2|, ~6 times in all, and each sqrt(lambda_i) by that over 2 sqrt(lambda_i) (its condition);
    the mean and trace terms add d + 2 roundings on their own size.
    """
    d = len(mu1)
    lam = torch.linalg.eigvals(s1 @ s2).real
    norms = torch.linalg.matrix_norm(s1, 2) * torch.linalg.matrix_norm(s2, 2)
    cross = 2 * 6 * d * (EPS / 2) * norms * (1 / (2 * lam.sqrt())).sum()
    plain = (d + 2) * (EPS / 2) * (((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace())
    return (cross + plain).item()


def cubic_kernel_mean(alpha, beta):
    """E (x.y / d + 1)^3 for independent x ~ N(alpha, I), y ~ N(beta, I) in d dimensions (KID's kernel).

    z = x.y is a sum of d independent x_i y_i, whose cumulants are alpha_i beta_i, 1 + alpha_i^2 + beta_i^2 and
    6 alpha_i beta_i; E z^2 = k2 + k1^2 and E z^3 = k3 + 3 k2 k1 + k1^3.
    """
    d = len(alpha)
    k1 = (alpha * beta).sum()
    k2 = d + (alpha**2).sum() + (beta**2).sum()
    k3 = 6 * k1
    z1, z2, z3 = k1, k2 + k1**2, k3 + 3 * k2 * k1 + k1**3
    return (1 + 3 * z1 / d + 3 * z2 / d**2 + z3 / d**3).item()


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    d = 6
    mu1, mu2 = torch.randn(2, d, generator=g, dtype=torch.float64)
    # Diagonal covariances: tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    a, b = torch.rand(2, d, generator=g, dtype=torch.float64) + 0.1
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    # The closed forms' own rounding (a few u on the mean and trace terms) is within fid_rounding's second part:
    # twice the bound covers both sides.
    tol = 2 * fid_rounding(mu1, torch.diag(a), mu2, torch.diag(b))
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected.item(), rel=0, abs=tol)
    # S2 = c S1 commutes with S1: the trace term is (1 - sqrt(c))^2 tr S1.
    s1 = random_spd(d, g)
    tol = 2 * fid_rounding(mu1, s1, mu1, 4.0 * s1)
    assert frechet_distance(mu1, s1, mu1, 4.0 * s1) == pytest.approx(s1.trace().item(), rel=0, abs=tol)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) <= fid_rounding(mu1, s1, mu1, s1)  # exactly 0 in exact arithmetic


def test_frechet_distance_matches_scipy_sqrtm_for_non_commuting_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    s1, s2 = random_spd(5, g), random_spd(5, g)
    mu1, mu2 = torch.randn(2, 5, generator=g, dtype=torch.float64)
    root = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = ((mu1 - mu2) ** 2).sum().item() + (s1.trace() + s2.trace()).item() - 2 * float(root.trace())
    # scipy takes the Schur form of the non-symmetric s1 s2, whose eigenvalues are sqrt(cond(s1)) times more
    # sensitive (s1 s2 = s1^1/2 (s1^1/2 s2 s1^1/2) s1^-1/2); otherwise as fid_rounding.
    cond = torch.linalg.cond(s1).sqrt().item()
    tol = fid_rounding(mu1, s1, mu2, s2) * (1 + cond)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=0, abs=tol)


def test_fid_of_samples_is_small_for_one_distribution_and_large_for_two():
    g = torch.Generator().manual_seed(2)
    n, d = 32_000, 4
    a, b = torch.randn(2, n, d, generator=g, dtype=torch.float64)
    shifted = torch.randn(n, d, generator=g, dtype=torch.float64) + 1.0
    # Two samples of N(0, I): the means differ by N(0, 2/n I), so |mu_a - mu_b|^2 ~ (2/n) chi2_d, and the
    # covariances by Wishart noise, whose trace term is (to second order) chi2_{d(d+1)/2} / n: FID has mean
    # (2d + d(d+1)/2) / n and variance (8d + d(d+1)) / n^2. Within 5 standard deviations (chi2 tail < 1e-3).
    mean, sd = (2 * d + d * (d + 1) / 2) / n, math.sqrt(8 * d + d * (d + 1)) / n
    assert fid_from_features(a, b) < mean + 5 * sd
    # Shifted by 1 in each of d coordinates: |1 + delta|^2 adds 2 1.delta ~ N(0, 8d/n) to the same terms.
    sd_shifted = math.sqrt(8 * d / n + sd**2)
    assert fid_from_features(a, shifted) == pytest.approx(d + mean, rel=0, abs=5 * sd_shifted)


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(3)
    N, m, S = 4800, 300, 100
    a, b = torch.randn(2, N, 8, generator=g, dtype=torch.float64)
    mean, std = kernel_inception_distance(a, b, subsets=S, subset_size=m)
    # The mean over S random subsets of m of the N points has variance Var(U_N) + (Var(U_m) - Var(U_N)) / S for
    # U_n the unbiased MMD^2 of n points; std estimates the second, so with r = Var(U_N) / Var(U_m) the standard
    # error is std sqrt(r / (1 - r) + 1 / S). For one distribution U is degenerate, Var(U_n) ~ 1 / n^2:
    # r = m (m - 1) / (N (N - 1)). Unbiased: within 4 standard errors of 0 (two-sided p = 6e-5).
    r = m * (m - 1) / (N * (N - 1))
    assert abs(mean) < 4 * std * math.sqrt(r / (1 - r) + 1 / S)
    # Shifted by 0.5 in each of the 8 coordinates: MMD^2 = E k(a, a') + E k(b, b') - 2 E k(a, b) in closed form
    # (1.117); Var(U_n) ~ 1 / n now, r = m / N.
    shifted, shifted_std = kernel_inception_distance(a, b + 0.5, subsets=S, subset_size=m)
    zero, half = torch.zeros(8, dtype=torch.float64), torch.full((8,), 0.5, dtype=torch.float64)
    expected = cubic_kernel_mean(zero, zero) + cubic_kernel_mean(half, half) - 2 * cubic_kernel_mean(zero, half)
    r = m / N
    assert abs(shifted - expected) < 4 * shifted_std * math.sqrt(r / (1 - r) + 1 / S)


def test_kid_std_is_the_population_std_of_the_subsets_mmd():
    """With two subsets of values v1, v2, the population standard deviation (torch-fidelity's np.std,
    torchmetrics' unbiased=False) is |v1 - v2| / 2, so mean - std and mean + std are v1 and v2 themselves.
    Subsets of N - 1 of N points leave one point out of each set: v1 and v2 are among the N^2 unbiased MMD^2 of
    those leave-one-out pairs, written out here as sums over pairs of distinct points (Binkowski et al., eq. 3).
    The sample standard deviation (|v1 - v2| / sqrt 2) would put mean +- std outside them."""
    g = torch.Generator().manual_seed(5)
    N, d = 6, 2
    a, b = torch.randn(2, N, d, generator=g, dtype=torch.float64)
    a = a + 0.7  # two distributions, so that the leave-one-out values differ
    k = lambda x, y: float((x @ y / d + 1) ** 3)

    def mmd2(x, y):
        m = len(x)
        within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        return within - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2

    keep = lambda i: [j for j in range(N) if j != i]
    possible = torch.tensor([mmd2(a[keep(i)], b[keep(j)]) for i in range(N) for j in range(N)])
    mean, std = kernel_inception_distance(a, b, subsets=2, subset_size=N - 1)
    assert std > 1e-3
    for value in (mean - std, mean + std):
        assert (possible - value).abs().min() < 1e-9


def test_precision_and_recall_on_known_sets():
    g = torch.Generator().manual_seed(4)
    left = torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 - 3
    right = torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 + 3
    real = torch.cat([left, right])
    same = torch.cat([torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 - 3,
                      torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.1 + 3])
    p, r = precision_recall(real, same)
    # Not derived: k-NN manifolds (k = 3) have no closed-form coverage; 0.9 is the bar for "covers its own
    # distribution" (0.98 here), and the one threshold of this test.
    assert p > 0.9 and r > 0.9
    # Samples from one of the two modes only: every sample is realistic, half the data is missed: the far mode's
    # 500 real points lie 60 standard deviations from any sample, so r <= 500 / 1000 exactly, and the near mode is
    # covered as in the same-distribution case.
    p, r = precision_recall(real, torch.randn(1000, 2, generator=g, dtype=torch.float64) * 0.1 - 3)
    assert p > 0.9 and 0.9 < 2 * r <= 1.0
    p, r = precision_recall(real, torch.randn(1000, 2, generator=g, dtype=torch.float64) * 0.1 + 10)
    assert p == 0.0 and r == 0.0


def test_fid_of_features_uses_the_unbiased_covariance_as_pytorch_fid():
    """pytorch-fid's statistics are np.mean and np.cov (divisor N - 1) of the features; at N = 12 the biased
    covariance (divisor N) would move FID by tr(S) / N-scale amounts, far above rounding."""
    import numpy as np
    from scipy import linalg

    g = torch.Generator().manual_seed(5)
    a = torch.randn(12, 3, generator=g, dtype=torch.float64)
    b = torch.randn(12, 3, generator=g, dtype=torch.float64) * 1.5 + 0.2
    A, B = a.numpy(), b.numpy()
    s1, s2 = np.cov(A, rowvar=False), np.cov(B, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(((A.mean(0) - B.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    # Two backward-stable evaluations of an O(1) value in 3 dimensions: 1e-10 is far below the 1/N effect.
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-10, abs=1e-10)


def brute_precision_recall(real, fake, k):
    """Kynkäänniemi et al. 2019 from the definition, by loops: a point is inside a set's manifold when it lies within
    some member's distance to that member's k-th nearest other member."""
    def radii(x):
        return [sorted(float((x[i] - x[j]).norm()) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    def share_inside(points, centres):
        r = radii(centres)
        return sum(any(float((p - c).norm()) <= r[i] for i, c in enumerate(centres)) for p in points) / len(points)

    return share_inside(fake, real), share_inside(real, fake)


@pytest.mark.parametrize("k", [1, 3])
def test_precision_and_recall_equal_their_definition_on_small_sets(k):
    """Small sets of different spreads around one centre, so that precision (fake inside the real manifold) and
    recall (real inside the fake one) differ, and the k-th neighbour's radius decides many memberships."""
    g = torch.Generator().manual_seed(6)
    real = torch.randn(40, 2, generator=g, dtype=torch.float64)
    fake = torch.randn(30, 2, generator=g, dtype=torch.float64) * 2.0 + 0.5
    p, r = precision_recall(real, fake, k=k, batch=7)
    expected = brute_precision_recall(real, fake, k)
    assert (p, r) == pytest.approx(expected, abs=1e-12)
    assert abs(expected[0] - expected[1]) > 0.1  # the two differ, so a swap would show


@pytest.mark.parametrize("call, a, b, match", [
    (fid_from_features, (1, 4), (10, 4), "FID: at least 2 feature vectors are needed on each side .* got 1 and 10"),
    (fid_from_features, (10, 4), (10, 3), r"FID: features must be \[N, D\] and \[M, D\] .* got \(10, 4\) and \(10, 3"),
    (kernel_inception_distance, (10, 4), (10, 3), r"KID: features must be .* got \(10, 4\) and \(10, 3\)"),
    (precision_recall, (3, 4), (10, 4), "precision and recall: at least 4 feature vectors .* got 3 and 10"),
    (precision_recall, (10,), (10,), r"precision and recall: features must be .* got \(10,\) and \(10,\)"),
])
def test_features_a_metric_cannot_take_are_refused_naming_what_was_given(call, a, b, match):
    """Before, torch failed deep inside: eigh not converging on the NaN covariance of one vector, a product of
    mismatched matrices, kthvalue out of range."""
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=match):
        call(torch.randn(*a, generator=g), torch.randn(*b, generator=g))


def test_non_finite_features_and_empty_subsets_are_refused():
    """NaN features made eigh fail to converge; KID over 0 subsets returned (nan, nan); k = 0 returned (0, 0)."""
    a, b = torch.randn(10, 4), torch.randn(10, 4)
    with pytest.raises(ValueError, match="FID: the features hold NaN or inf"):
        fid_from_features(torch.cat([a, torch.full((1, 4), math.nan)]), b)
    with pytest.raises(ValueError, match="KID needs subsets >= 1 .* got 0"):
        kernel_inception_distance(a, b, subsets=0)
    with pytest.raises(ValueError, match="k >= 1 .* got k = 0"):
        precision_recall(a, b, k=0)
