"""Sample quality: Fréchet distance on a feature network (Heusel et al. 2017), the domain classifier.

FID = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}), computed in float64 with
tr((S_1 S_2)^{1/2}) = sum sqrt(eig(S_1^{1/2} S_2 S_1^{1/2})), a symmetric PSD matrix, so no complex
square roots are needed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from .data import ImageData, to_model_range
from .nets.classifier import ClassifierConfig, DomainClassifier

DEFAULT_CACHE = Path.home() / ".cache" / "gaussdiff"


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
    """FID between two feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def train_domain_classifier(data: ImageData, steps: int = 1500, batch_size: int = 128, seed: int = 0) -> DomainClassifier:
    """Train the domain classifier on labelled images (random shifts by one pixel as augmentation)."""
    if data.labels is None or data.num_classes is None:
        raise ValueError("the domain classifier needs a labelled dataset")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DomainClassifier(ClassifierConfig(in_channels=data.shape[0], num_classes=data.num_classes))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=g)
        x = to_model_range(data.images[idx])
        dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(model(x), data.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def domain_classifier(name: str, data: ImageData, cache_dir: Path = DEFAULT_CACHE) -> DomainClassifier:
    """The domain classifier of dataset ``name``, trained once and cached by the data's content hash."""
    digest = hashlib.sha256(data.images.numpy().tobytes() + data.labels.numpy().tobytes()).hexdigest()[:16]
    path = cache_dir / "classifiers" / f"{Path(name).stem}-{digest}.safetensors"
    model = DomainClassifier(ClassifierConfig(in_channels=data.shape[0], num_classes=data.num_classes or 0))
    if path.exists():
        model.load_state_dict(load_file(path))
        return model.eval()
    model = train_domain_classifier(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(model.state_dict(), tmp)
    tmp.replace(path)
    return model


@torch.no_grad()
def classifier_features(model: DomainClassifier, images: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Features ``[N, D]`` and logits ``[N, K]`` of ``uint8 [N, C, H, W]`` images."""
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        x = to_model_range(images[i : i + batch_size])
        f = model.features(x)
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(feats), torch.cat(logits)
