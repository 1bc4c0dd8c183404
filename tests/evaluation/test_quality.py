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

