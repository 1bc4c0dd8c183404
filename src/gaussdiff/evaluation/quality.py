"""Sample quality: FID, KID, precision/recall and, for conditional samples, the domain classifier's
agreement with the conditions asked for, against the real training set."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..data.datasets import ImageData
from .features import ExtractorName, make_extractor, reference_features
from .metrics import fid_from_features, kernel_inception_distance, precision_recall


@dataclass
class QualityReport:
    n: int
    features: str
    fid: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    accuracy: float | None = None
    """The domain classifier's agreement with the requested labels (conditional samples)."""


def evaluate_quality(
    images: Tensor,
    data_name: str,
    reference: ImageData,
    features: ExtractorName = "classifier",
    labels: Tensor | None = None,
    reference_limit: int | None = None,
    device: str = "cpu",
) -> QualityReport:
    """Sample quality of ``uint8 [N, C, H, W]`` images against ``reference`` (the real training set)."""
    extractor = make_extractor(features, data_name, reference, device=device)
    real = reference_features(extractor, data_name, reference, limit=reference_limit)
    fake = extractor(images)
    kid, kid_std = kernel_inception_distance(real, fake.features, subsets=50)
    precision, recall = precision_recall(real, fake.features)
    accuracy = None
    if labels is not None and fake.logits is not None:
        accuracy = float((fake.logits.argmax(1) == labels).double().mean())
    return QualityReport(len(images), features, fid_from_features(real, fake.features), kid, kid_std, precision, recall, accuracy)
