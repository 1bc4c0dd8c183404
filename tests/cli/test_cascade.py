"""Cascaded diffusion from the command line: a base model at a resized resolution, super-resolution stages,
sample --cascade, sample --low-res, eval --super-res-test and --cascade; stages that do not fit get one line."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_FLAGS, expect_error
from gaussdiff.cli import main
from gaussdiff.conditioning.super_res import LowResolution
from gaussdiff.data import load_data
from gaussdiff.training import load_trained

STEPS = ["--train-steps", "2", "--checkpoint-every", "2", "--sample-every", "2"]



@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A class-conditional base model of digits at 4x4, and a 4 -> 8 stage (Gaussian augmentation)."""
    root = tmp_path_factory.mktemp("cascade")
    flags = [*TINY_FLAGS, *STEPS, "--class-conditional", "--p-uncond", "0.2"]
    main(["train", "--run-dir", str(root / "base"), "--image-size", "4", *flags, "--attention-resolutions", "2"])
    main(["train", "--run-dir", str(root / "sr"), "--super-res", "4", "--cond-aug-max", "0.3", *flags])
    return {"base": root / "base", "sr": root / "sr"}


def test_the_runs_record_their_resolutions(runs):
    base, sr = load_trained(runs["base"]), load_trained(runs["sr"])
    assert base.config.data.image_size == 4 and base.sample_shape == (1, 4, 4)
    (stage, label) = sr.conditions
    assert isinstance(stage, LowResolution) and stage.low == 4 and sr.config.data.image_size == 8
    assert sr.config.super_res.super_res == 4 and sr.config.model.low_res_channels == 1


def test_sample_a_cascade_and_super_resolve_given_images(runs, tmp_path):
    main(["sample", "--cascade", str(runs["base"]), str(runs["sr"]), "--class", "3", "--n", "4", "--steps", "3", "2",
          "--stages", "--out", str(tmp_path / "c.png"), str(tmp_path / "c.npz"), "--device", "cpu"])
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert f["arr_0"].shape == (4, 8, 8, 1) and f["arr_1"].tolist() == [3] * 4
    # The stages' picture says how it was drawn, as the samples' does (the caption kept in the PNG).
    with Image.open(tmp_path / "c.png") as grid, Image.open(tmp_path / "c-stages.png") as stages:
        assert stages.text["Description"] == grid.text["Description"] and "seed 0" in grid.text["Description"]
    # --low-res: the user's 4x4 images, labels from arr_1, outputs in the input order.
    low = load_data("digits", image_size=4)
    np.savez(tmp_path / "low.npz", low.images[:5].permute(0, 2, 3, 1).numpy(), low.labels[:5].numpy())
    main(["sample", str(runs["sr"]), "--low-res", str(tmp_path / "low.npz"), "--steps", "2", "--cond-aug-level", "0",
          "--out", str(tmp_path / "sr.npz"), "--device", "cpu"])
    with np.load(tmp_path / "sr.npz", allow_pickle=False) as f:
        assert f["arr_0"].shape == (5, 8, 8, 1) and f["arr_1"].tolist() == low.labels[:5].tolist()


def test_the_stage_is_given_the_low_resolution_images_asked_for(runs, tmp_path, monkeypatch):
    sr = load_trained(runs["sr"])
    seen = []
    original = sr.model.forward
    sr.model.forward = lambda x, t, **cond: (seen.append(cond), original(x, t, **cond))[1]
    monkeypatch.setattr("gaussdiff.cli.sample.load_trained", lambda *a, **k: sr)
    low = load_data("digits", image_size=4)
    np.savez(tmp_path / "low.npz", low.images[:2].permute(0, 2, 3, 1).numpy())
    main(["sample", str(runs["sr"]), "--low-res", str(tmp_path / "low.npz"), "--class", "1", "--steps", "2",
          "--cond-aug-level", "0", "--out", str(tmp_path / "s.png"), "--device", "cpu"])
    # Level 0 passes the images unchanged, in [-1, 1], at every step, with the level 0.
    expected = low.images[:2].float() / 127.5 - 1
    assert seen and all(torch.equal(c["low_res"], expected) and bool((c["low_res_level"] == 0).all()) for c in seen)


def test_eval_a_stage_on_the_test_split_and_a_cascade(runs, capsys):
    capsys.readouterr()
    main(["eval", str(runs["sr"]), "--super-res-test", "--n", "12", "--steps", "2", "--json", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    r = figures["super_res"]
    assert (r["n"], r["low"], r["high"]) == (12, 4, 8) and r["psnr_bilinear"] > 0 and 0 < r["ssim_bilinear"] <= 1
    drawn = figures["samples"]  # how the super-resolved images were drawn, as the report's title says
    assert (drawn["sampler"], drawn["steps"], drawn["seed"], drawn["cond_aug_level"]) == ("ddim", [2], 0, r["level"])
    main(["eval", "--cascade", str(runs["base"]), str(runs["sr"]), "--fid", "--n", "20", "--steps", "2", "--json",
          "--cond-aug-level", "0.25", "--seed", "3", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["quality"]["n"] == 20 and figures["quality"]["accuracy"] is not None
    drawn = figures["samples"]
    assert (drawn["steps"], drawn["seed"], drawn["cond_aug_level"]) == ([2, 2], 3, 0.25)  # each stage's
    assert drawn["described"] == "ddim, 2 steps, linspace spacing a stage, s = 0.25, EMA weights, seed 3"
    # The test samples with --sampler and --steps alone: what it would ignore is refused.
    for flags in (["--nfe", "4"], ["--guidance", "1"], ["--timesteps", "trailing"], ["--fid"], ["--bpd"], ["--ode"],
                  ["--eta", "0.5"], ["--classifier", runs["base"]], ["--samples", runs["base"] / "s.npz"]):
        expect_error(capsys, "eval", runs["sr"], "--super-res-test", *flags, "--device", "cpu",
                     match=f"takes no {flags[0]}")
    for steps in ("0", "100000"):  # a respacing of the run's schedule, as for sampling
        expect_error(capsys, "eval", runs["sr"], "--super-res-test", "--steps", steps, "--device", "cpu",
                     match="--steps must lie in 1..")


def test_super_res_test_refuses_what_quality_cannot_measure_before_sampling(runs, tmp_path, capsys, monkeypatch):
    """--n below the 4 samples quality takes, or data without labels for the domain classifier's features: one
    line before the held-out split is super-resolved or a cascade samples (they sampled first, then were refused
    by the quality report)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the work ran before the bad input was refused")

    monkeypatch.setattr("gaussdiff.cli.eval.evaluate_super_resolution", refuse)
    monkeypatch.setattr("gaussdiff.cli.eval.generate_cascade", refuse)
    expect_error(capsys, "eval", runs["sr"], "--super-res-test", "--n", "3", "--steps", "2", "--device", "cpu",
                 match="--n must be at least 4")
    unlabelled = tmp_path / "unlabelled.npz"  # the stage's 8x8 grey images, without labels
    np.savez(unlabelled, load_data("digits").images[:40].permute(0, 2, 3, 1).numpy())
    for command in (["eval", runs["sr"], "--super-res-test"], ["eval", "--cascade", runs["base"], runs["sr"], "--fid"]):
        expect_error(capsys, *command, "--data", unlabelled, "--n", "4", "--steps", "2", "--device", "cpu",
                     match="the domain classifier needs a labelled dataset; use --features inception")


def test_show_trajectory_of_a_stage_is_one_line(runs, tmp_path, capsys):
    """A super-resolution stage samples only given low-resolution images: show trajectory, which gives none,
    refuses it in one line (it was a ValueError traceback from the U-Net, 'pass low_res')."""
    expect_error(capsys, "show", "trajectory", runs["sr"], "--steps", "2", "--out", tmp_path / "t.png", "--device",
                 "cpu", match="is a super-resolution run: show trajectory samples from noise alone")
    assert not (tmp_path / "t.png").exists()


def test_stages_that_do_not_fit_get_one_line(runs, tmp_path, capsys):
    flags = [*TINY_FLAGS, *STEPS]
    main(["train", "--run-dir", str(tmp_path / "plain"), *flags])  # 8x8, unconditional
    expect_error(capsys, "sample", "--cascade", runs["sr"], runs["sr"], "--device", "cpu", match="must be a base model")
    expect_error(capsys, "sample", "--cascade", runs["base"], tmp_path / "plain", "--device", "cpu",
                 match="not a super-resolution run")
    main(["train", "--run-dir", str(tmp_path / "sr-plain"), "--super-res", "4", *flags])  # unconditional stage
    expect_error(capsys, "sample", "--cascade", runs["base"], tmp_path / "sr-plain", "--device", "cpu",
                 match="every stage must take the same")
    main(["train", "--run-dir", str(tmp_path / "sr2"), "--super-res", "2", *flags, "--class-conditional"])
    expect_error(capsys, "sample", "--cascade", runs["base"], tmp_path / "sr2", "--device", "cpu",
                 match="upsamples 2x2")
    # --nfe is checked against every stage, not the base's schedule alone
    main(["train", "--run-dir", str(tmp_path / "sr-short"), "--super-res", "4", *flags, "--class-conditional",
          "--diffusion-steps", "10"])
    short = ["--cascade", runs["base"], tmp_path / "sr-short", "--device", "cpu"]
    for command in ("sample", "eval"):
        expect_error(capsys, command, *short, "--nfe", "20", *(["--fid"] if command == "eval" else []),
                     match="--nfe 20 needs more steps than the run's 10")
    # ...and --steps against each stage's schedule when --nfe does not choose them (eval raised the respacing's
    # ValueError), but not when it does (sample refused --nfe 5 as if --steps 50 had been given)
    for command in (["eval", *short, "--fid", "--n", "4"], ["eval", tmp_path / "sr-short", "--super-res-test"],
                    ["sample", *short]):
        expect_error(capsys, *command, "--steps", "11", match="--steps must lie in 1..10")
    main(["sample", *map(str, short), "--nfe", "5", "--n", "2", "--out", str(tmp_path / "short.npz")])
    assert (tmp_path / "short.npz").exists()
    # Without --steps each stage takes 50 steps, or every step of a stage that has fewer (it was refused: the
    # default asked the 10-step stage for 50); the caption counts each stage's.
    main(["sample", *map(str, short), "--n", "2", "--out", str(tmp_path / "default.npz")])
    with np.load(tmp_path / "default.npz", allow_pickle=False) as f:
        assert ", 50/10 steps," in str(f["info"])
    expect_error(capsys, "sample", runs["sr"], "--device", "cpu", match="--low-res")
    expect_error(capsys, "eval", runs["sr"], "--fid", "--device", "cpu", match="--super-res-test")
    expect_error(capsys, "train", "--super-res", "8", *flags, "--run-dir", tmp_path / "x", match="below the image size")


def test_a_text_conditioned_stage_super_resolves_with_prompts(tmp_path):
    run = tmp_path / "sr-text"
    main(["train", "--run-dir", str(run), "--super-res", "4", "--cond-aug", "blur", "--cond-aug-max", "1", "--text",
          "--p-uncond", "0.2", "--text-width", "16", "--text-layers", "1", *TINY_FLAGS, *STEPS])
    low = load_data("digits", image_size=4)
    np.savez(tmp_path / "low.npz", low.images[:3].permute(0, 2, 3, 1).numpy())
    main(["sample", str(run), "--low-res", str(tmp_path / "low.npz"), "--prompt", "the digit five", "--guidance", "2",
          "--steps", "2", "--out", str(tmp_path / "t.npz"), "--device", "cpu"])
    with np.load(tmp_path / "t.npz", allow_pickle=False) as f:
        assert f["arr_0"].shape == (3, 8, 8, 1) and f["prompts"].tolist() == ["the digit five"] * 3


def test_a_stage_draws_its_augmentation_noise_apart_from_every_samples_noise(runs, monkeypatch):
    """Sample i's noise comes from seed sample_seed(seed, i); each image's conditioning augmentation from a generator
    of its own (stream 1), so that it is independent of the samples' noise. Seeded from stream 0, image i's
    augmentation would replay sample i's first draws."""
    from gaussdiff.evaluation.generate import generate, sample_seed

    seeds = []
    augment = LowResolution.augment
    monkeypatch.setattr(LowResolution, "augment",
                        lambda self, value, generator=None, level=None: (seeds.append(generator.initial_seed()),
                                                                         augment(self, value, generator, level))[1])
    low = load_data("digits", image_size=4).images[:6].float() / 127.5 - 1
    generate(load_trained(runs["sr"]), 6, steps=2, seed=5, batch_size=2, low_res=low, cond_aug_level=0.2,
             labels=torch.zeros(6, dtype=torch.long), progress=False)
    assert len(seeds) == 6  # one generator an image
    assert not set(seeds) & {sample_seed(5, i) for i in range(6)}


def test_a_classifier_guides_the_base_stage_and_must_fit_its_images(runs, tmp_path, capsys):
    """The classifier sees the base stage's 4x4 images only (the stages after it follow the base's images and
    labels); one of another size is refused before anything is sampled, in a cascade as for one run."""
    clf = ["train-classifier", "--classifier-steps", "2", "--diffusion-steps", "50", "--batch-size", "8",
           "--classifier-channels", "16", "--device", "cpu"]
    main([*clf, "--run-dir", str(tmp_path / "clf4"), "--image-size", "4", "--attention-resolutions", "2"])
    main(["sample", "--cascade", str(runs["base"]), str(runs["sr"]), "--classifier", str(tmp_path / "clf4"),
          "--class", "1", "--n", "2", "--steps", "2", "--out", str(tmp_path / "c.npz"), "--device", "cpu"])
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        assert f["arr_0"].shape == (2, 8, 8, 1) and f["arr_1"].tolist() == [1, 1]
    main([*clf, "--run-dir", str(tmp_path / "clf8")])  # digits at their 8x8
    for command in (["--cascade", runs["base"], runs["sr"]], [runs["base"]]):
        expect_error(capsys, "sample", *command, "--classifier", tmp_path / "clf8", "--class", "1", "--n", "2",
                     "--steps", "2", "--out", tmp_path / "x.png", "--device", "cpu",
                     match="classifies 8x8 images of 1 channel(s), the model samples 4x4 of 1")
    assert not (tmp_path / "x.png").exists()


def test_augmentation_levels_out_of_range_get_one_line_before_any_sampling(runs, tmp_path, capsys, monkeypatch):
    """s is a cosine time in [0, 1] for Gaussian augmentation: NaN, infinite, negative or past 1 is refused in
    training, and in sampling before the base stage draws (a level for a cascade's last stage must not cost the
    base's samples), as is a level given to a run that has no stage to read it."""
    flags = [*TINY_FLAGS, *STEPS, "--super-res", "4", "--run-dir", tmp_path / "x"]
    for option, value, match in [("--cond-aug-max", "nan", "--cond-aug-max must be a finite number"),
                                 ("--cond-aug-level", "inf", "--cond-aug-level must be a finite number"),
                                 ("--cond-aug-level", "-1", "--cond-aug-level must be a finite number"),
                                 ("--cond-aug-level", "5", "--cond-aug-level 5: a gaussian augmentation level")]:
        expect_error(capsys, "train", *flags, option, value, match=match)
    assert not (tmp_path / "x").exists()
    generate = sys.modules["gaussdiff.evaluation.generate"]  # the package's name `generate` is the function
    monkeypatch.setattr(generate, "sample", lambda *a, **k: pytest.fail("sampled"))
    cascade = ["sample", "--cascade", runs["base"], runs["sr"], "--n", "2", "--steps", "2", "--device", "cpu",
               "--out", tmp_path / "c.png"]
    expect_error(capsys, *cascade, "--cond-aug-level", "nan", match="--cond-aug-level must be a finite number")
    expect_error(capsys, *cascade, "--cond-aug-level", "1.5", match="a gaussian augmentation level is a time in [0, 1]")
    expect_error(capsys, "sample", runs["base"], "--cond-aug-level", "0.1", "--steps", "2", "--device", "cpu",
                 match="--cond-aug-level is for super-resolution runs")
    assert not (tmp_path / "c.png").exists()
    # more samples than memory holds, counted at the last stage's size (8x8, not the base's 4x4), before the base draws
    huge = "99999999999999"
    expect_error(capsys, *cascade, "--n", huge, match=f"--n {huge}: {huge} images of 1x8x8 take")
    expect_error(capsys, "eval", "--cascade", runs["base"], runs["sr"], "--fid", "--n", huge, "--device", "cpu",
                 match=f"--n {huge}: {huge} images of 1x8x8 take")


def test_class_all_with_low_res_images_is_refused(runs, tmp_path, capsys):
    """--low-res draws one sample per given image, so --class all's row per class cannot be: its labels were cut to
    the first class, and every image was super-resolved as class 0 (arr_1 all zeros, the caption silent)."""
    low = load_data("digits", image_size=4)
    np.savez(tmp_path / "low.npz", low.images[:3].permute(0, 2, 3, 1).numpy(), low.labels[:3].numpy())
    expect_error(capsys, "sample", runs["sr"], "--low-res", tmp_path / "low.npz", "--class", "all", "--steps", "2",
                 "--out", tmp_path / "sr.npz", "--device", "cpu", match="--class all")
    assert not (tmp_path / "sr.npz").exists()
