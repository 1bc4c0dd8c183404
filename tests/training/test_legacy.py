"""Runs saved by gaussdiff 0.1 still load, sample and measure: a small run and classifier saved by that
version (tests/fixtures/*-v0.1, weights and config.json only) against the samples they give.

The reference samples were drawn again when each sample got its own seeded noise (so that sharded
sampling equals one process); the weights and configs are still 0.1's own files.

0.1 kept the U-Net's knobs with the labels in ``model``, the optimiser flat in ``train`` and the
classifier's knobs flat beside ``network``; :func:`gaussdiff.training.config.upgrade` converts them.
"""

import json
from pathlib import Path

import numpy as np

from gaussdiff.cli import main
from gaussdiff.training.classifier import load_noisy_classifier
from gaussdiff.training.config import ClassifierTrainConfig, RunConfig, from_dict, upgrade
from gaussdiff.training.run import load_trained

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RUN, CLASSIFIER = FIXTURES / "run-v0.1", FIXTURES / "classifier-v0.1"


def test_a_saved_run_of_version_0_1_loads_with_its_settings_in_todays_places():
    trained = load_trained(RUN)
    c = trained.config
    assert c.format == 2 and c.conditioning.class_conditional and c.conditioning.p_uncond == 0.2
    assert (c.model.image_size, c.model.in_channels, c.model.out_channels, c.model.num_classes) == (8, 1, 1, 10)
    assert c.model.channels == 8 and c.train.optim.lr == 0.05 and c.train.optim.warmup == 2
    assert [k.key for k in trained.conditions] == ["y"]
    # Today's configs pass through the upgrade untouched.
    raw = json.loads((RUN / "config.json").read_text())
    today = upgrade(raw, RunConfig)
    assert upgrade(today, RunConfig) is today and from_dict(RunConfig, today) == c


def assert_same_samples(new: Path, old: Path) -> None:
    a, b = np.load(new), np.load(old)
    assert np.array_equal(a["arr_1"], b["arr_1"])
    # The same computation in float32: different CPUs' kernels may round differently by ~1e-6 relative,
    # which can carry a value across one of the 255 boundaries between uint8 levels, never further.
    assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1


def test_a_run_of_version_0_1_samples_what_it_sampled_then(tmp_path):
    main(["sample", str(RUN), "--n", "10", "--class", "all", "--guidance", "1", "--steps", "5",
          "--out", str(tmp_path / "s.npz"),
          "--device", "cpu"])
    assert_same_samples(tmp_path / "s.npz", FIXTURES / "run-v0.1-samples.npz")


def test_a_classifier_of_version_0_1_guides_as_it_did(tmp_path):
    classifier, config = load_noisy_classifier(CLASSIFIER)
    assert isinstance(config, ClassifierTrainConfig) and config.classifier.encoder.channels == 8
    assert config.classifier.num_classes == 10 and config.optim.lr_schedule == "one_cycle"
    main(["sample", str(RUN), "--class", "3", "--n", "4", "--classifier", str(CLASSIFIER), "--classifier-scale", "5",
          "--sampler", "ddpm", "--steps", "5", "--out", str(tmp_path / "c.npz"), "--device", "cpu"])
    assert_same_samples(tmp_path / "c.npz", FIXTURES / "classifier-v0.1-samples.npz")


def test_a_run_of_version_0_1_is_measured_given_its_labels(tmp_path, capsys):
    capsys.readouterr()
    main(["eval", str(RUN), "--bpd", "--n", "8", "--steps", "4", "--json", "--out-dir", str(tmp_path),
          "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["conditioned_on"] == ["y"] and figures["bpd"]["n"] == 8
