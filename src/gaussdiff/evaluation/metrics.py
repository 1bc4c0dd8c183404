"""Sample-quality metrics on feature vectors: FID, KID, precision and recall.

- FID (Heusel et al. 2017): |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}), in float64 with
  tr((S_1 S_2)^{1/2}) = sum sqrt(eig(S_1^{1/2} S_2 S_1^{1/2})), a symmetric PSD matrix, so no complex
  square roots are needed.
- KID (Bińkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
  averaged over random subsets.
- Precision and recall (Kynkäänniemi et al. 2019): the share of generated samples inside the
  real manifold (the union of balls reaching each real sample's k-th nearest real neighbour),
  and of real samples inside the generated manifold.

All take features ``[N, D]`` and ``[M, D]`` (finite, of one dimension D), and refuse, in one line, sets too small
for the statistic.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_features(metric: str, a: Tensor, b: Tensor, least: int, why: str) -> None:
    """Refuse feature sets that are not ``[N, D]`` and ``[M, D]`` with one D, hold NaN or inf, or hold fewer than
    ``least`` vectors each (what ``metric`` needs, ``why``), as a :class:`ValueError` naming what was given:
    torch would fail deep inside (an eigensolver that does not converge, a product of mismatched matrices)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"{metric}: features must be [N, D] and [M, D] of one dimension D, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if len(a) < least or len(b) < least:
        raise ValueError(f"{metric}: at least {least} feature vectors are needed on each side ({why}), got "
                         f"{len(a)} and {len(b)}")
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ValueError(f"{metric}: the features hold NaN or inf (are the images or the feature network finite?)")


def _sqrtm_psd(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (means ``[D]``, covariances ``[D, D]``)."""
    mu1, mu2, sigma1, sigma2 = (a.double() for a in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross)


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and (unbiased) covariance ``[D, D]`` of ``features: [N, D]`` in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def fid_from_features(a: Tensor, b: Tensor) -> float:
    """FID between two feature sets ``[N, D]`` and ``[M, D]``, N, M >= 2."""
    check_features("FID", a, b, 2, "a covariance")
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def kernel_inception_distance(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): mean and standard deviation over ``subsets`` random subsets of
    ``subset_size`` of each set of the unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3.

    The standard deviation is the population one (divided by ``subsets``), as torch-fidelity and
    torchmetrics report it, so that the figures compare with theirs.
    """
    check_features("KID", real, fake, 2, "the unbiased estimate leaves each sample's kernel with itself out")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    real, fake = real.double(), fake.double()
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=g)[:m]]
        y = fake[torch.randperm(len(fake), generator=g)[:m]]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        # Unbiased: the diagonals (a sample with itself) are left out of the within-set means.
        mmd = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        values.append(float(mmd - 2 * kxy.mean()))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(correction=0))


def _kth_neighbour_radius(x: Tensor, k: int, batch: int) -> Tensor:
    radii = []
    for i in range(0, len(x), batch):
        d = torch.cdist(x[i : i + batch], x)
        # The k+1-th smallest distance: the nearest is the point itself at distance 0.
        radii.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside(points: Tensor, centres: Tensor, radii: Tensor, batch: int) -> Tensor:
    out = []
    for i in range(0, len(points), batch):
        d = torch.cdist(points[i : i + batch], centres)
        out.append((d <= radii[None]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, batch: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radii: ``real: [N, D]``, ``fake: [M, D]``,
    N, M > k >= 1; ``batch`` rows of distances at a time."""
    if k < 1 or batch < 1:
        raise ValueError(f"precision and recall need k >= 1 and batch >= 1, got k = {k} and batch = {batch}")
    check_features("precision and recall", real, fake, k + 1, f"each one's {k}-th nearest neighbour among the others")
    real, fake = real.double(), fake.double()
    precision = _inside(fake, real, _kth_neighbour_radius(real, k, batch), batch).double().mean()
    recall = _inside(real, fake, _kth_neighbour_radius(fake, k, batch), batch).double().mean()
    return float(precision), float(recall)
