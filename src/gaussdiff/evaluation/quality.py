"""Sample quality: FID, KID, precision/recall and, for conditional samples, the domain classifier's
agreement with the conditions asked for, against the real training set: the class (labels), or every
attribute of a ``shapes`` prompt (prompt accuracy, separately for the attribute pairs the training
split held out)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..data.datasets import ImageData
from ..data.shapes import HEAD_SIZES, is_held_out
from ..errors import DataError
from .features import (DEFAULT_CACHE, ClassifierExtractor, ExtractorName, make_extractor, predict_heads,
                       reference_features)
from .metrics import fid_from_features, kernel_inception_distance, precision_recall


@dataclass
class PromptAccuracy:
    """The share of images whose every attribute matches its prompt, over all, the prompts whose attribute
    pairs the training split showed (seen), and those it held out."""

    accuracy: float
    seen: float
    held_out: float
    n_seen: int
    n_held_out: int


def prompt_accuracy(logits: Tensor, attributes: Tensor) -> PromptAccuracy:
    """Score the attribute classifier's ``logits: [N, sum(HEAD_SIZES)]`` against the prompts'
    ``attributes: int64 [N, 7]``. A one-object layout makes the second object's heads moot."""
    predicted = predict_heads(logits, HEAD_SIZES)
    predicted[predicted[:, 0] < 4, 4:] = -1  # layouts 0-3 hold one object
    match = (predicted == attributes).all(dim=1).double()
    held = is_held_out(attributes)
    share = lambda m: float(m.mean()) if len(m) else float("nan")  # noqa: E731
    return PromptAccuracy(share(match), share(match[~held]), share(match[held]), int((~held).sum()), int(held.sum()))


@dataclass
class QualityReport:
    """Sample quality of ``n`` images in the ``features`` of an extractor (``classifier`` or ``inception``): FID
    against the reference set, KID and its standard deviation over 50 subsets, and precision and recall (k = 3)
    against a random subset of the reference as large as the samples."""

    n: int
    features: str
    fid: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    accuracy: float | None = None
    """The domain classifier's agreement with the requested labels (conditional samples)."""
    prompts: PromptAccuracy | None = None
    """Prompt accuracy of samples of ``shapes`` prompts."""


MIN_SAMPLES = 4
"""The fewest samples a quality report can measure: precision and recall take each sample's 3rd nearest neighbour
among the others."""


def evaluate_quality(
    images: Tensor,
    data_name: str,
    reference: ImageData,
    features: ExtractorName = "classifier",
    labels: Tensor | None = None,
    reference_limit: int | None = None,
    device: str = "cpu",
    attributes: Tensor | None = None,
    cache_dir: Path = DEFAULT_CACHE,
) -> QualityReport:
    """Sample quality of ``uint8 [N, C, H, W]`` images against ``reference`` (the real training set; with the
    classifier's features, images of its shape); ``labels: [N]`` or the prompts' ``attributes: [N, 7]`` they were
    asked for, if any."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"sample quality takes uint8 [N, C, H, W] images, got {images.dtype} {list(images.shape)}")
    if features == "classifier" and tuple(images.shape[1:]) != tuple(reference.shape):
        # The domain classifier pools globally: images of another size would be scored silently.
        raise ValueError(f"the domain classifier scores images of the reference's shape {list(reference.shape)}, got "
                         f"{list(images.shape[1:])}")
    for name, asked in (("labels", labels), ("attributes", attributes)):
        if asked is not None and len(asked) != len(images):
            raise ValueError(f"{len(asked)} {name} for {len(images)} images")
    if len(images) < MIN_SAMPLES:
        raise DataError(f"sample quality needs at least {MIN_SAMPLES} images (precision and recall's 3rd-neighbour "
                        f"radii; KID's unbiased estimate), got {len(images)}")
    extractor = make_extractor(features, data_name, reference, cache_dir, device=device)
    real = reference_features(extractor, data_name, reference, limit=reference_limit, cache_dir=cache_dir)
    fake = extractor(images)
    kid, kid_std = kernel_inception_distance(real, fake.features, subsets=50)
    # Precision and recall compare sets of equal size (Kynkaanniemi et al. 2019): as many reference images as
    # samples, a fixed random subset; their k-NN radii over all 60 000 would cost minutes on a CPU.
    subset = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[: len(images)]
    precision, recall = precision_recall(real[subset], fake.features)
    accuracy, prompts = None, None
    if labels is not None and fake.logits is not None:
        accuracy = float((fake.logits.argmax(1) == labels).double().mean())
    if attributes is not None and fake.logits is not None:
        prompts = prompt_accuracy(fake.logits, attributes)
    return QualityReport(len(images), features, fid_from_features(real, fake.features), kid, kid_std, precision, recall,
                         accuracy, prompts)


def attribute_ceiling(data_name: str, reference: ImageData, held_out: ImageData,
                      cache_dir: Path = DEFAULT_CACHE) -> PromptAccuracy:
    """The attribute classifier's own prompt accuracy on real held-out scenes: the best a sample can score."""
    extractor = make_extractor("classifier", data_name, reference, cache_dir)
    assert isinstance(extractor, ClassifierExtractor) and held_out.attributes is not None
    with torch.no_grad():
        logits = extractor(held_out.images).logits
    return prompt_accuracy(logits, held_out.attributes)
