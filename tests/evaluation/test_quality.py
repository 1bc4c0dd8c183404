"""evaluate_quality: which set is which in its figures, with a stand-in feature extractor."""

import torch

import gaussdiff.evaluation.quality as quality
from gaussdiff.data import ImageData
from gaussdiff.evaluation.features import Features


def test_samples_from_one_of_two_modes_are_precise_but_recall_half(monkeypatch):
    """Reference features in two far-apart clusters, samples' features in one of them: every sample is realistic
    (precision near 1) and half the data is missed (recall at most 1/2), the example Kynkäänniemi et al. give. A
    swap of the two sets in the report would read precision 1/2, recall 1."""
    g = torch.Generator().manual_seed(0)
    real = torch.cat([torch.randn(200, 2, generator=g, dtype=torch.float64) * 0.1 - 3,
                      torch.randn(200, 2, generator=g, dtype=torch.float64) * 0.1 + 3])
    fake = torch.randn(400, 2, generator=g, dtype=torch.float64) * 0.1 - 3
    monkeypatch.setattr(quality, "make_extractor", lambda *a, **k: (lambda images: Features(fake)))
    monkeypatch.setattr(quality, "reference_features", lambda *a, **k: real)
    images = torch.zeros(400, 1, 8, 8, dtype=torch.uint8)
    report = quality.evaluate_quality(images, "digits", ImageData(images, None))
    # The subset of 400 reference points holds both clusters (200 each); the far cluster lies 60 standard
    # deviations from every sample.
    assert report.precision > 0.9 and 0.4 < report.recall <= 0.5
    assert report.fid > 30  # the means differ by 3 in each of 2 dimensions: |mu_1 - mu_2|^2 = 18 of it alone



def test_images_the_features_cannot_score_are_refused_naming_them(monkeypatch):
    """Float images in [-1, 1] and images of another size than the reference went through the globally pooled
    domain classifier and were scored silently; labels of another count broadcast or failed in the comparison."""
    import pytest

    monkeypatch.setattr(quality, "make_extractor", lambda *a, **k: pytest.fail("extracted"))
    reference = ImageData(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), None)
    with pytest.raises(ValueError, match=r"takes uint8 \[N, C, H, W\] images, got torch.float32 \[4, 1, 8, 8\]"):
        quality.evaluate_quality(torch.zeros(4, 1, 8, 8), "digits", reference)
    with pytest.raises(ValueError, match=r"the reference's shape \[1, 8, 8\], got \[1, 16, 16\]"):
        quality.evaluate_quality(torch.zeros(4, 1, 16, 16, dtype=torch.uint8), "digits", reference)
    with pytest.raises(ValueError, match="1 labels for 4 images"):
        quality.evaluate_quality(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), "digits", reference,
                                 labels=torch.zeros(1, dtype=torch.long))
