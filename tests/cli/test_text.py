"""Text prompts from the command line: train --text, sample --prompt / --prompt-file, show trajectory --prompt,
eval on the held-out captions; and one line plus exit 2 for every bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_FLAGS, expect_error
from gaussdiff.cli import main
from gaussdiff.conditioning.text import TextPrompt, split_words
from gaussdiff.data import load_data
from gaussdiff.training import load_trained
from gaussdiff.viz import image_grid



@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("text") / "run"
    main(["train", "--run-dir", str(run), "--text", "--p-uncond", "0.2", *TINY_FLAGS, "--train-steps", "2",
          "--checkpoint-every", "2", "--sample-every", "2", "--text-width", "16", "--text-layers", "1"])
    return run


def test_a_text_run_saves_its_vocabulary_and_previews_its_prompts(text_run):
    trained = load_trained(text_run)
    (text,) = trained.conditions
    assert isinstance(text, TextPrompt) and text.p_drop == 0.2
    # The vocabulary is every word of the digits' captions, and the network's embedding has a row for each.
    captions = load_data("digits").captions
    assert set(text.tokenizer.vocabulary) == {w for c in captions for w in split_words(c)}
    assert trained.model.text.token.num_embeddings == len(text.tokenizer.vocabulary) + 2
    assert len(text.prompts) == 8 and set(text.prompts) <= set(captions)
    # The prompts are written beside the rows: the picture is wider than the grid of 64 previews alone.
    assert Image.open(text_run / "samples.png").width > image_grid(torch.zeros(64, 1, 8, 8, dtype=torch.uint8), 8).width


def test_sample_with_prompts_and_a_prompt_file(text_run, tmp_path):
    main(["sample", str(text_run), "--prompt", "the digit seven", "a handwritten two", "--n", "6", "--steps", "3",
          "--guidance", "2", "--out", str(tmp_path / "p.npz"), str(tmp_path / "p.png"), "--device", "cpu"])
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        assert f["arr_0"].shape == (6, 8, 8, 1)
        assert f["prompts"].tolist() == ["the digit seven"] * 3 + ["a handwritten two"] * 3
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the digit one\n\n  a handwritten nine  \nthe digit zero\n")
    main(["sample", str(text_run), "--prompt-file", str(prompts), "--n", "7", "--steps", "3", "--out",
          str(tmp_path / "f.npz"), "--device", "cpu"])
    with np.load(tmp_path / "f.npz", allow_pickle=False) as f:  # 3 rows of ceil(7 / 3) = 3
        assert f["prompts"].tolist() == ["the digit one"] * 3 + ["a handwritten nine"] * 3 + ["the digit zero"] * 3
    # The .npz reads back as captioned data (what eval --samples scores against its prompts).
    assert load_data(str(tmp_path / "f.npz")).captions == ["the digit one"] * 3 + ["a handwritten nine"] * 3 + [
        "the digit zero"] * 3


def test_the_model_is_given_the_prompt_asked_for(text_run, tmp_path, monkeypatch):
    trained = load_trained(text_run)
    seen = []
    original = trained.model.forward
    monkeypatch.setattr("gaussdiff.cli.sample.load_trained", lambda *a, **k: trained)
    trained.model.forward = lambda x, t, **cond: (seen.append(cond["tokens"]), original(x, t, **cond))[1]
    main(["sample", str(text_run), "--prompt", "the digit seven", "--n", "2", "--steps", "2", "--guidance", "1",
          "--out", str(tmp_path / "s.png"), "--device", "cpu"])
    (text,) = trained.conditions
    asked, null = text.encode(["the digit seven"] * 2), text.null(text.encode(["the digit seven"] * 2))
    # Classifier-free guidance: one batched pass of the prompt and the empty prompt, every step.
    assert seen and all(torch.equal(tokens, torch.cat([asked, null])) for tokens in seen)


def test_trajectory_and_eval_of_a_text_run(text_run, tmp_path, capsys):
    main(["show", "trajectory", str(text_run), "--prompt", "the digit four", "--n", "1", "--steps", "3",
          "--out", str(tmp_path / "t.png"), "--device", "cpu"])
    assert (tmp_path / "t.png").exists()
    capsys.readouterr()
    main(["eval", str(text_run), "--fid", "--n", "20", "--steps", "2", "--json", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Prompted with the held-out captions, the samples are scored against those captions' classes.
    assert figures["quality"]["n"] == 20 and 0.0 <= figures["quality"]["accuracy"] <= 1.0
    main(["eval", str(text_run), "--bpd", "--n", "8", "--steps", "5", "--json", "--device", "cpu"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["conditioned_on"] == ["tokens"]


def test_bad_text_inputs_get_one_line_and_exit_2(text_run, tmp_path, capsys, image_folder):
    expect_error(capsys, "sample", text_run, "--prompt", "the digit elevn", "--device", "cpu",
                 match="unknown word 'elevn'")
    expect_error(capsys, "sample", text_run, "--prompt-file", tmp_path / "missing.txt", "--device", "cpu",
                 match="cannot read it")
    (tmp_path / "empty.txt").write_text("\n \n")
    expect_error(capsys, "sample", text_run, "--prompt-file", tmp_path / "empty.txt", "--device", "cpu",
                 match="no prompts")
    long = " ".join(["seven"] * 40)
    expect_error(capsys, "sample", text_run, "--prompt", long, "--device", "cpu", match="reads at most")
    # A folder without metadata has no captions to learn from.
    expect_error(capsys, "train", "--data", image_folder, "--text", *TINY_FLAGS, "--run-dir", tmp_path / "r",
                 match="--text needs captions")
    expect_error(capsys, "train", "--p-uncond", "0.1", *TINY_FLAGS, "--run-dir", tmp_path / "r2",
                 match="--class-conditional or --text")
    expect_error(capsys, "train", "--text", "--text-heads", "3", *TINY_FLAGS, "--run-dir", tmp_path / "r3",
                 match="--text-heads dividing --text-width")
    expect_error(capsys, "train", "--text", "--text-layers", "0", *TINY_FLAGS, "--run-dir", tmp_path / "r4",
                 match="--text-layers >= 1")
    expect_error(capsys, "sample", text_run, "--classifier", tmp_path, "--device", "cpu", match="needs --class")


def test_prompts_need_a_text_run(tmp_path, capsys):
    run = tmp_path / "plain"
    main(["train", "--run-dir", str(run), *TINY_FLAGS, "--train-steps", "1", "--checkpoint-every", "1",
          "--sample-every", "1"])
    expect_error(capsys, "sample", run, "--prompt", "a seven", "--device", "cpu", match="needs a text run")
    expect_error(capsys, "show", "trajectory", run, "--prompt", "a seven", "--device", "cpu", match="needs a text run")
    (tmp_path / "prompts.txt").write_text("a seven\n")  # the option named is the one given
    expect_error(capsys, "sample", run, "--prompt-file", tmp_path / "prompts.txt", "--device", "cpu",
                 match="--prompt-file needs a text run")


def test_eval_of_shapes_samples_reports_prompt_accuracy(tmp_path, capsys, monkeypatch):
    """The path of ``eval`` on ``shapes``: a .npz's prompts are read back into attributes, scored by the
    attribute classifier, and reported for seen and held-out pairs beside the classifier's ceiling. The
    classifier here trains 30 steps into a temporary cache (the real one trains 1500, once per machine)."""
    import functools

    import gaussdiff.cli.eval as cli_eval
    import gaussdiff.evaluation.features as features

    train_briefly = functools.partial(features.train_domain_classifier, steps=30)
    monkeypatch.setattr(features, "train_domain_classifier", train_briefly)
    cache = tmp_path / "cache"
    monkeypatch.setattr(cli_eval, "evaluate_quality", functools.partial(cli_eval.evaluate_quality, cache_dir=cache))
    monkeypatch.setattr(cli_eval, "attribute_ceiling", functools.partial(cli_eval.attribute_ceiling, cache_dir=cache))
    test = load_data("shapes", "test")
    np.savez(tmp_path / "real.npz", test.images[:60].permute(0, 2, 3, 1).numpy(), prompts=np.array(test.captions[:60]))
    capsys.readouterr()
    main(["eval", "--samples", str(tmp_path / "real.npz"), "--data", "shapes", "--json"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    prompts = figures["quality"]["prompts"]
    from gaussdiff.data.shapes import is_held_out

    held = int(is_held_out(test.attributes[:60]).sum())
    assert (prompts["n_seen"], prompts["n_held_out"]) == (60 - held, held)
    assert 0.0 <= prompts["accuracy"] <= 1.0 and set(figures["prompt_ceiling"]) == set(prompts)
    # A prompt the templates cannot have made is one line, exit 2.
    np.savez(tmp_path / "odd.npz", test.images[:2].permute(0, 2, 3, 1).numpy(), prompts=np.array(["a cat", "a dog"]))
    expect_error(capsys, "eval", "--samples", tmp_path / "odd.npz", "--data", "shapes", match="not a shapes caption")
