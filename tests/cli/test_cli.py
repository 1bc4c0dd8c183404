"""The gaussdiff command: the tour of the README, and one line plus exit 2 for every bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_FLAGS
from gaussdiff.cli import main
from gaussdiff.conditioning import GuidanceConfig
from gaussdiff.data import load_data
from gaussdiff.evaluation import evaluate_bpd, generate
from gaussdiff.training import Trainer, list_checkpoints, load_trained


def run_cli(*args: str) -> None:
    main([str(a) for a in args])


def expect_error(capsys, *args, match: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err, err
    return err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "--run-dir", str(run), "--train-steps", "3", "--sample-every", "3", "--checkpoint-every", "3",
          *TINY_FLAGS])
    return run


def test_train_sample_show_and_resume(trained_run, tmp_path, capsys):
    assert (trained_run / "samples.png").exists()
    run_cli("sample", trained_run, "--n", "6", "--steps", "5", "--out", tmp_path / "s.png", tmp_path / "s.npz",
            "--device", "cpu")
    arr = np.load(tmp_path / "s.npz")["arr_0"]
    assert arr.shape == (6, 8, 8, 1) and arr.dtype == np.uint8
    assert Image.open(tmp_path / "s.png").width >= 3 * 64  # 8x8 digits are shown enlarged
    run_cli("sample", trained_run, "--n", "2", "--sampler", "ddpm", "--steps", "10", "--no-ema", "--out",
            tmp_path / "r.png", "--device", "cpu")
    run_cli("show", "forward", "--run", trained_run, "--t", "0", "10", "49", "--out", tmp_path / "f.png")
    run_cli("show", "trajectory", trained_run, "--frames", "4", "--steps", "8", "--out", tmp_path / "t.png",
            "--device", "cpu")
    assert Image.open(tmp_path / "f.png").size[0] > 3 * 64 and (tmp_path / "t.png").exists()
    # Sampling twice with one seed gives the same images.
    run_cli("sample", trained_run, "--n", "6", "--steps", "5", "--out", tmp_path / "s2.npz", "--device", "cpu")
    assert np.array_equal(np.load(tmp_path / "s2.npz")["arr_0"], arr)


def test_train_names_what_the_network_computes_in(tmp_path, capsys):
    """The run's first line names the precision, the layout and the compile mode the steps run in: --precision
    auto and --compile auto are resolved on the user's machine, and the user sees what they became."""
    main(["train", "--run-dir", str(tmp_path / "a"), "--train-steps", "1", *TINY_FLAGS])
    assert capsys.readouterr().err.splitlines()[0].endswith("M parameters, cpu, fp32, contiguous")
    main(["train", "--run-dir", str(tmp_path / "b"), "--train-steps", "1", *TINY_FLAGS, "--precision", "bf16",
          "--memory-format", "channels_last"])
    assert capsys.readouterr().err.splitlines()[0].endswith(", cpu, bf16, channels_last")


def metrics(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def test_resume_reaches_steps_the_first_run_never_did_with_the_losses_of_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                                                capsys):
    flags = [*TINY_FLAGS, "--train-steps", "6", "--checkpoint-every", "3", "--log-every", "1", "--sample-every", "100"]
    run_cli("train", "--run-dir", tmp_path / "full", *flags)
    real_step = Trainer.train_step

    def killed_before_step_5(self):
        if self.step == 4:
            raise KeyboardInterrupt  # Ctrl-C after the checkpoint at step 3
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", killed_before_step_5)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("train", "--run-dir", tmp_path / "cut", *flags)
    assert exit_info.value.code == 130
    assert ([p.name for p in list_checkpoints(tmp_path / "cut")] == ["step-0000003"]
            and max(metrics(tmp_path / "cut")) == 4)
    with pytest.raises(SystemExit):  # an existing run is never overwritten
        run_cli("train", "--run-dir", tmp_path / "cut", *flags)
    taken = []

    def counted(self):
        taken.append(self.step + 1)
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", counted)
    capsys.readouterr()
    run_cli("train", "--run-dir", tmp_path / "cut", "--resume")  # only --resume: the run's saved config
    # the user is told where it continues (the bar alone starts part-full)
    assert (f"gaussdiff: resuming from {tmp_path / 'cut' / 'checkpoints' / 'step-0000003'}: step 3 of 6"
            in capsys.readouterr().err)
    # It continued from the checkpoint, not from scratch, up to steps the first run never reached...
    assert taken == [4, 5, 6] and [p.name for p in list_checkpoints(tmp_path / "cut")][-1] == "step-0000006"
    # ...with exactly the losses of the uninterrupted run, and no step logged twice.
    assert metrics(tmp_path / "cut") == metrics(tmp_path / "full")
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 6


def test_bad_inputs_get_one_line_and_exit_2(trained_run, tmp_path, capsys, image_folder):
    expect_error(capsys, "sample", tmp_path / "nowhere", match="no such run or checkpoint")
    (tmp_path / "a-file").write_text("")
    expect_error(capsys, "sample", tmp_path / "a-file", match="a file, not a run or checkpoint directory")
    (tmp_path / "empty-run").mkdir()
    expect_error(capsys, "sample", tmp_path / "empty-run", match="no checkpoint")
    expect_error(capsys, "sample", trained_run, "--out", tmp_path / "x.jpg", match=".png or .npz")
    expect_error(capsys, "sample", trained_run, "--steps", "5000", match="--steps must lie in 1..50")
    expect_error(capsys, "train", "--data", tmp_path / "missing", *TINY_FLAGS, match="no such dataset")
    expect_error(capsys, "train", "--data", "fashion-mnist", "--data-dir", tmp_path, *TINY_FLAGS,
                 match="apt-get install")
    (image_folder / "red" / "0.png").write_bytes(b"garbage")
    expect_error(capsys, "train", "--data", image_folder, "--image-size", "8", *TINY_FLAGS,
                 match="red/0.png (UnidentifiedImageError)")
    expect_error(capsys, "train", "--resume", match="--resume needs --run-dir")
    expect_error(capsys, "show", "forward", "--t", "5000", match="outside 0..999")
    # A checkpoint whose weights do not fit its config (a mismatched checkpoint).
    ckpt = sorted((trained_run / "checkpoints").iterdir())[-1]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ckpt.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text((ckpt / "config.json").read_text().replace('"channels": 16', '"channels": 32'))
    expect_error(capsys, "sample", broken, match="config.json: contents differ from what was written")  # manifest
    (broken / "manifest.json").unlink()  # as written before manifests: the readers' own checks speak
    err = expect_error(capsys, "sample", broken, match="shape")
    assert "\n" not in err
    (broken / "config.json").write_text("{not json")
    expect_error(capsys, "sample", broken, match="not a gaussdiff config")
    (broken / "ema.safetensors").write_bytes(b"junk")
    (broken / "config.json").write_text((ckpt / "config.json").read_text())
    expect_error(capsys, "sample", broken, match="cannot read weights")


def test_invalid_arguments_exit_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "gaussdiff", "sample"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gaussdiff", "train", "--variance", "wide"], capture_output=True,
                          text=True)
    # tyro's boxed report of a bad option is condensed to one line
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "invalid choice 'wide'" in proc.stderr


def eval_json(capsys, *args) -> dict:
    import json

    capsys.readouterr()
    run_cli("eval", *args, "--json", "--device", "cpu")
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_bpd_ode_fid_and_samples(trained_run, tmp_path, capsys):
    figures = eval_json(capsys, trained_run, "--bpd", "--ode", "--n", "12", "--out-dir", tmp_path)
    b = figures["bpd"]
    assert b["n"] == 12 and b["steps"] == 50
    # The total is the sum of its parts, and rate-distortion ends at the bound less the decoder's L_0.
    assert abs(b["bpd"] - (b["l0"] + b["sum_l_t"] + b["prior"])) < 1e-6
    assert abs(figures["rate_distortion"][-1]["rate"] - (b["bpd"] - b["l0"])) < 1e-6
    assert (tmp_path / "bpd.png").exists() and figures["ode"]["ode_bpd"] > 0
    respaced = eval_json(capsys, trained_run, "--bpd", "--n", "12", "--steps", "10", "--out-dir", tmp_path)
    assert respaced["bpd"]["steps"] == 10
    fid = eval_json(capsys, trained_run, "--fid", "--n", "40", "--steps", "5")
    q = fid["quality"]
    assert q["n"] == 40 and q["fid"] > 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    # A kept JSON says how its samples were drawn, as the text report's title does.
    drawn = fid["samples"]
    assert {k: drawn[k] for k in ("sampler", "steps", "nfe", "timesteps", "eta", "seed", "weights", "guidance",
                                  "classifier")} == {
        "sampler": "ddim", "steps": [5], "nfe": None, "timesteps": "linspace spacing", "eta": None, "seed": 0,
        "weights": "EMA weights", "guidance": 0.0, "classifier": None}
    assert drawn["described"].startswith("ddim, 5 steps, linspace spacing, EMA weights, seed 0")
    tuned = eval_json(capsys, trained_run, "--fid", "--n", "20", "--nfe", "3", "--sampler", "dpm++2m",
                      "--seed", "4")["samples"]
    assert (tuned["steps"], tuned["nfe"], tuned["timesteps"], tuned["seed"]) == (None, 3, "trailing spacing", 4)
    run_cli("sample", trained_run, "--n", "30", "--steps", "5", "--out", tmp_path / "s.npz", "--device", "cpu")
    scored = eval_json(capsys, "--samples", tmp_path / "s.npz", "--data", "digits")
    assert scored["quality"]["n"] == 30 and scored["samples"] == {"file": str(tmp_path / "s.npz")}
    capsys.readouterr()
    run_cli("eval", trained_run, "--bpd", "--n", "4", "--steps", "5", "--out-dir", tmp_path, "--device", "cpu")
    out = capsys.readouterr().out
    assert "L_0 (decoder)" in out
    assert "on 4 held-out images, 5 steps, EMA weights, seed 0 (bits/dim)" in out  # every figure says what it is


def test_eval_on_data_without_a_held_out_split_does_not_call_its_images_held_out(trained_run, tmp_path, capsys):
    """A .npz (as a folder or prepared shards) gives the same images for every split: --bpd and --ode on it measure
    the data itself, the training images here, and said "held-out images", a generalization figure they are not."""
    from gaussdiff.data import load_data

    train = load_data("digits", image_size=8)
    np.savez(tmp_path / "train.npz", train.images[:6].permute(0, 2, 3, 1).numpy())
    capsys.readouterr()
    run_cli("eval", trained_run, "--bpd", "--ode", "--data", tmp_path / "train.npz", "--n", "4", "--steps", "5",
            "--out-dir", tmp_path, "--device", "cpu")
    out = capsys.readouterr().out
    assert "held-out images" not in out and out.count("(no held-out split: the data itself)") == 2
    figures = eval_json(capsys, trained_run, "--bpd", "--n", "4", "--steps", "5", "--out-dir", tmp_path)
    assert figures["split"] == "test"


def test_eval_needs_something_to_measure(trained_run, tmp_path, capsys):
    expect_error(capsys, "eval", trained_run, match="say what to measure")
    np.savez(tmp_path / "x.npz", np.zeros((4, 8, 8, 1), dtype=np.uint8))
    expect_error(capsys, "eval", "--samples", tmp_path / "x.npz", match="needs --data")
    np.savez(tmp_path / "y.npz", np.zeros((4, 16, 16, 1), dtype=np.uint8))
    expect_error(capsys, "eval", "--samples", tmp_path / "y.npz", "--data", "digits", match="expected 8x8")
    # A missing samples file is named as --samples (it was "no such dataset, folder or file", as if --data were wrong).
    expect_error(capsys, "eval", "--samples", tmp_path / "nope.npz", "--data", "digits",
                 match=f"--samples {tmp_path / 'nope.npz'}: no such file")


def test_eval_ode_refuses_a_zero_terminal_snr_run(tmp_path, capsys):
    """The ODE likelihood is not defined at sigma_T = infinity; it was an OverflowError traceback."""
    run_cli("train", "--run-dir", tmp_path / "z", "--train-steps", "1", "--zero-terminal-snr", "--prediction", "v",
            *TINY_FLAGS)
    expect_error(capsys, "eval", tmp_path / "z", "--ode", "--n", "2", match="--ode needs alpha_bar_T > 0")


def test_conditional_training_guidance_and_the_classifier(tmp_path, capsys, trained_run):
    run, clf = tmp_path / "cond", tmp_path / "clf"
    run_cli("train", "--run-dir", run, "--train-steps", "2", "--checkpoint-every", "2", "--class-conditional",
            "--p-uncond", "0.1", *TINY_FLAGS)
    run_cli("sample", run, "--class", "all", "--n", "20", "--guidance", "2", "--steps", "4", "--out",
            tmp_path / "g.npz", tmp_path / "g.png", "--device", "cpu")
    f = np.load(tmp_path / "g.npz")
    assert f["arr_0"].shape == (20, 8, 8, 1) and f["arr_1"].tolist() == [k for k in range(10) for _ in range(2)]
    # The picture and the arrays say how they were drawn; a row per class, named.
    with Image.open(tmp_path / "g.png") as png:
        said = png.text["Description"]
    assert said == str(f["info"]) and "step-0000002, EMA weights, ddim, 4 steps" in said and "seed 0" in said
    assert "guidance w = 2" in said and "warning" not in capsys.readouterr().err  # trained with --p-uncond
    run_cli("train-classifier", "--run-dir", clf, "--classifier-steps", "3", "--diffusion-steps", "50",
            "--batch-size", "16", "--classifier-channels", "16", "--device", "cpu")
    assert (clf / "classifier.safetensors").exists() and (clf / "metrics.json").exists()
    for sampler in ("ddpm", "ddim"):
        run_cli("sample", run, "--class", "3", "--n", "4", "--classifier", clf, "--classifier-scale", "5",
                "--sampler", sampler, "--steps", "5", "--out", tmp_path / f"c-{sampler}.npz", "--device", "cpu")
        drawn = np.load(tmp_path / f"c-{sampler}.npz")
        assert drawn["arr_1"].tolist() == [3] * 4 and f"seed 0, class 3, classifier {clf}" in str(drawn["info"])
    # Classifier guidance also steers an unconditional model.
    run_cli("sample", trained_run, "--class", "1", "--n", "2", "--classifier", clf, "--steps", "5",
            "--out", tmp_path / "u.npz", "--device", "cpu")
    q = eval_json(capsys, run, "--fid", "--n", "20", "--steps", "4", "--guidance", "1")["quality"]
    assert q["accuracy"] is not None and 0 <= q["accuracy"] <= 1
    # Both guidances are named: in the JSON's samples and in the report's title.
    guided = eval_json(capsys, run, "--fid", "--n", "20", "--steps", "4", "--guidance", "1", "--classifier", clf,
                       "--classifier-scale", "3")["samples"]
    assert (guided["guidance"], guided["classifier"], guided["classifier_scale"]) == (1.0, str(clf), 3.0)
    assert guided["described"].endswith(f", guidance w = 1, classifier {clf} at scale 3")
    assert guided["classifier_mode"] == "paired"
    expect_error(capsys, "sample", trained_run, "--guidance", "2", match="class-conditional")
    expect_error(capsys, "sample", trained_run, "--class", "3", match="--class needs a class-conditional run")
    expect_error(capsys, "sample", run, "--class", "12", match="--class must be")
    expect_error(capsys, "sample", run, "--class", "10", match="--class must be")  # 10 is the null label
    wrong = tmp_path / "clf-wrong"
    run_cli("train-classifier", "--run-dir", wrong, "--classifier-steps", "2", "--diffusion-steps", "40",
            "--batch-size", "8", "--classifier-channels", "16", "--device", "cpu")
    expect_error(capsys, "sample", run, "--classifier", wrong, "--steps", "4", match="schedule")
    expect_error(capsys, "sample", run, "--classifier", tmp_path, match="not a classifier run")


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("conditional") / "run"
    main(["train", "--run-dir", str(run), "--train-steps", "3", "--checkpoint-every", "3", "--class-conditional",
          "--p-uncond", "0.2", "--lr", "0.05", *TINY_FLAGS])
    return run


def sampled(tmp_path: Path, run: Path, *args: str) -> np.ndarray:
    out = tmp_path / f"{len(list(tmp_path.iterdir()))}.npz"
    run_cli("sample", run, "--n", "4", "--seed", "1", "--out", out, "--device", "cpu", *args)
    return np.load(out)


def test_the_caption_names_the_eta_the_samples_were_drawn_with(trained_run, tmp_path, capsys):
    """DDIM at --eta 1 draws fresh noise at every step (DDPM's sampler): the caption said "ddim" alone, as for the
    deterministic eta 0. The npz's info (as the PNG's caption) and eval's title now give the eta asked for."""
    info = str(sampled(tmp_path, trained_run, "--steps", "3", "--eta", "1")["info"])
    assert ", ddim, eta 1, 3 steps, " in info
    assert ", ddim, 3 steps, " in str(sampled(tmp_path, trained_run, "--steps", "3")["info"])  # none asked: none said
    figures = eval_json(capsys, trained_run, "--fid", "--n", "8", "--steps", "3", "--eta", "0.5")
    assert figures["samples"]["described"].startswith("ddim, eta 0.5, 3 steps, ")


def test_sample_draws_what_its_options_ask_for(conditional_run, tmp_path):
    """The images of `sample` are those of the library call with the same class, guidance weight and
    steps, and each of these options changes them (so none of them is dropped on the way)."""
    trained = load_trained(conditional_run)

    def library(label: int, guidance: float, steps: int) -> np.ndarray:
        images, labels = generate(trained, 4, "ddim", steps, seed=1, labels=torch.full((4,), label),
                                  guidance=GuidanceConfig(guidance=guidance), progress=False)
        assert labels.tolist() == [label] * 4
        return images.permute(0, 2, 3, 1).numpy()

    base = sampled(tmp_path, conditional_run, "--class", "3", "--guidance", "2", "--steps", "4")
    assert base["arr_1"].tolist() == [3] * 4
    assert np.array_equal(base["arr_0"], library(3, 2.0, 4))
    for args, (label, guidance, steps) in [
        (("--class", "4", "--guidance", "2", "--steps", "4"), (4, 2.0, 4)),
        (("--class", "3", "--guidance", "0", "--steps", "4"), (3, 0.0, 4)),
        (("--class", "3", "--guidance", "2", "--steps", "8"), (3, 2.0, 8)),
    ]:
        other = sampled(tmp_path, conditional_run, *args)
        assert np.array_equal(other["arr_0"], library(label, guidance, steps)), args
        assert not np.array_equal(other["arr_0"], base["arr_0"]), f"{args} changed nothing"


def test_the_model_is_given_the_class_asked_for(conditional_run):
    """generate passes the requested labels to the network, and classifier-free guidance adds the null label."""
    trained = load_trained(conditional_run)
    seen = []
    trained.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["y"].clone()),
                                            with_kwargs=True)
    generate(trained, 4, "ddim", 2, labels=torch.full((4,), 7), progress=False)
    assert all(y.tolist() == [7] * 4 for y in seen) and len(seen) == 2
    seen.clear()
    generate(trained, 4, "ddim", 2, labels=torch.full((4,), 7), guidance=GuidanceConfig(guidance=1.0), progress=False)
    assert all(y.tolist() == [7] * 4 + [10] * 4 for y in seen) and len(seen) == 2


def test_eval_measures_a_conditional_model_given_the_labels(conditional_run, tmp_path, capsys):
    figures = eval_json(capsys, conditional_run, "--bpd", "--ode", "--n", "6", "--steps", "4", "--out-dir", tmp_path)
    assert figures["conditioned_on"] == ["y"] and figures["bpd"]["n"] == 6 and figures["ode"]["ode_bpd"] > 0
    capsys.readouterr()
    run_cli("eval", conditional_run, "--bpd", "--n", "6", "--steps", "4", "--out-dir", tmp_path, "--device", "cpu")
    assert "held-out images given their labels" in capsys.readouterr().out
    # The figure is the bound given each image's own label: the library's, and not the unconditional one.
    trained, held_out = load_trained(conditional_run), load_data("digits", "test")
    given = evaluate_bpd(trained, held_out.images[:6], {"y": held_out.labels[:6]}, steps=4, progress=False)
    unconditional = evaluate_bpd(trained, held_out.images[:6], steps=4, progress=False)
    assert figures["bpd"]["bpd"] == given.bpd != unconditional.bpd


def test_trajectory_of_a_conditional_run_samples_the_class_asked_for(conditional_run, tmp_path, monkeypatch, capsys):
    import gaussdiff.cli.show as show

    seen = []
    real = show.sample
    monkeypatch.setattr(show, "sample",
                        lambda *args, **kwargs: (seen.append(kwargs.get("y")), real(*args, **kwargs))[1])
    run_cli("show", "trajectory", conditional_run, "--class", "7", "--n", "2", "--frames", "2", "--steps", "2",
            "--out", tmp_path / "t.png", "--device", "cpu")
    run_cli("show", "trajectory", conditional_run, "--n", "3", "--frames", "2", "--steps", "2",
            "--out", tmp_path / "u.png", "--device", "cpu")
    assert [y.tolist() for y in seen] == [[7, 7], [0, 1, 2]]  # the class asked for; by default one class each
    expect_error(capsys, "show", "trajectory", conditional_run, "--class", "10", match="--class must be")


def test_guidance_of_a_run_trained_without_p_uncond_warns_in_one_line(tmp_path, capsys):
    """Its null label's embedding never trained: --guidance steers by it all the same, so the samples are drawn
    and one line says why they may be poor."""
    run = tmp_path / "cond"
    run_cli("train", "--run-dir", run, "--train-steps", "1", "--checkpoint-every", "1", "--class-conditional",
            *TINY_FLAGS)
    capsys.readouterr()
    run_cli("sample", run, "--n", "2", "--guidance", "2", "--steps", "2", "--out", tmp_path / "g.npz")
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "without --p-uncond" in warning[0], warning
    run_cli("sample", run, "--n", "2", "--steps", "2", "--out", tmp_path / "plain.npz")  # no guidance, no warning
    assert "warning" not in capsys.readouterr().err


def test_class_all_names_each_row_by_its_class(conditional_trained, tmp_path, monkeypatch):
    """--class all draws a row per class: the grid writes "class K" beside row K (and nothing without --class)."""
    import gaussdiff.cli.sample as sample_module

    grids = []
    monkeypatch.setattr(sample_module, "save_grid", lambda images, path, nrow=None, row_labels=(), caption="":
                        grids.append((nrow, list(row_labels))))
    run = conditional_trained.checkpoint
    run_cli("sample", run, "--class", "all", "--n", "10", "--steps", "2", "--out", tmp_path / "g.png")
    run_cli("sample", run, "--n", "4", "--steps", "2", "--out", tmp_path / "h.png")
    assert grids == [(1, [f"class {k}" for k in range(10)]), (None, [])]


def test_quality_needs_enough_samples_for_its_neighbours():
    """Precision and recall take each sample's 3rd nearest neighbour: fewer than 4 samples is one line, whoever
    calls (eval --samples FILE.npz with 3 images reaches here without --n)."""
    from gaussdiff.errors import DataError
    from gaussdiff.evaluation.quality import evaluate_quality

    with pytest.raises(DataError, match="at least 4 images"):
        evaluate_quality(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), "digits", load_data("digits"))


def test_eval_prints_each_figure_beside_its_name():
    """eval's text report: every figure of the quality report on the line that names it (KID as mean ± std), each
    value distinct here so that any exchange shows."""
    from gaussdiff.cli.eval import Eval
    from gaussdiff.evaluation.quality import QualityReport

    report = QualityReport(n=10, features="classifier", fid=1.25, kid=0.03125, kid_std=0.00781, precision=0.5,
                           recall=0.75, accuracy=0.875)
    lines = Eval(checkpoint=None).quality_lines(report, "title")
    assert lines == ["title", "  FID        1.250", "  KID        0.03125 ± 0.00781", "  precision  0.500",
                     "  recall     0.750", "  classifier accuracy on the labels  0.875"]
