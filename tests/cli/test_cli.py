"""The gaussdiff command: the tour of the README, and one line plus exit 2 for every bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_FLAGS
from gaussdiff.cli.main import main


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
    main(["train", "--run-dir", str(run), "--train-steps", "3", "--sample-every", "3", "--checkpoint-every", "3", *TINY_FLAGS])
    return run


def test_train_sample_show_and_resume(trained_run, tmp_path, capsys):
    assert (trained_run / "samples.png").exists()
    run_cli("sample", trained_run, "--n", "6", "--steps", "5", "--out", tmp_path / "s.png", tmp_path / "s.npz", "--device", "cpu")
    arr = np.load(tmp_path / "s.npz")["arr_0"]
    assert arr.shape == (6, 8, 8, 1) and arr.dtype == np.uint8
    assert Image.open(tmp_path / "s.png").width >= 3 * 64  # 8x8 digits are shown enlarged
    run_cli("sample", trained_run, "--n", "2", "--sampler", "ddpm", "--steps", "10", "--no-ema", "--out", tmp_path / "r.png", "--device", "cpu")
    run_cli("show", "forward", "--run", trained_run, "--t", "0", "10", "49", "--out", tmp_path / "f.png")
    run_cli("show", "trajectory", trained_run, "--frames", "4", "--steps", "8", "--out", tmp_path / "t.png", "--device", "cpu")
    assert Image.open(tmp_path / "f.png").size[0] > 3 * 64 and (tmp_path / "t.png").exists()
    # Sampling twice with one seed gives the same images.
    run_cli("sample", trained_run, "--n", "6", "--steps", "5", "--out", tmp_path / "s2.npz", "--device", "cpu")
    assert np.array_equal(np.load(tmp_path / "s2.npz")["arr_0"], arr)


def test_resume_continues_with_the_saved_config(tmp_path):
    run = tmp_path / "run"
    run_cli("train", "--run-dir", run, "--train-steps", "2", "--checkpoint-every", "2", *TINY_FLAGS)
    with pytest.raises(SystemExit):  # an existing run is never overwritten
        run_cli("train", "--run-dir", run, *TINY_FLAGS)
    run_cli("train", "--run-dir", run, "--resume")
    assert (run / "checkpoints" / "step-0000002").exists()


def test_bad_inputs_get_one_line_and_exit_2(trained_run, tmp_path, capsys, image_folder):
    expect_error(capsys, "sample", tmp_path / "nowhere", match="no such run or checkpoint")
    (tmp_path / "empty-run").mkdir()
    expect_error(capsys, "sample", tmp_path / "empty-run", match="no checkpoint")
    expect_error(capsys, "sample", trained_run, "--out", tmp_path / "x.jpg", match=".png or .npz")
    expect_error(capsys, "sample", trained_run, "--steps", "5000", match="--steps must lie in 1..50")
    expect_error(capsys, "train", "--data", tmp_path / "missing", *TINY_FLAGS, match="no such dataset")
    expect_error(capsys, "train", "--data", "fashion-mnist", "--data-dir", tmp_path, *TINY_FLAGS, match="apt-get install")
    (image_folder / "red" / "0.png").write_bytes(b"garbage")
    expect_error(capsys, "train", "--data", image_folder, "--image-size", "8", *TINY_FLAGS, match="0.png: cannot read image")
    expect_error(capsys, "train", "--resume", match="--resume needs --run-dir")
    expect_error(capsys, "show", "forward", "--t", "5000", match="outside 0..999")
    # A checkpoint whose weights do not fit its config (a mismatched checkpoint).
    ckpt = sorted((trained_run / "checkpoints").iterdir())[-1]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ckpt.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text((ckpt / "config.json").read_text().replace('"channels": 16', '"channels": 32'))
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
    proc = subprocess.run([sys.executable, "-m", "gaussdiff", "train", "--variance", "wide"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def eval_json(capsys, *args) -> dict:
    import json

    capsys.readouterr()
    run_cli("eval", *args, "--json", "--device", "cpu")
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_bpd_ode_fid_and_samples(trained_run, tmp_path, capsys):
    figures = eval_json(capsys, trained_run, "--bpd", "--ode", "--n", "12", "--out-dir", tmp_path)
    b = figures["bpd"]
    assert b["n"] == 12 and b["steps"] == 50
    # The total is the sum of its parts, and rate-distortion ends at the total bound.
    assert abs(b["bpd"] - (b["l0"] + b["sum_l_t"] + b["prior"])) < 1e-6
    assert abs(figures["rate_distortion"][-1]["rate"] - b["bpd"]) < 1e-6
    assert (tmp_path / "bpd.png").exists() and figures["ode"]["ode_bpd"] > 0
    respaced = eval_json(capsys, trained_run, "--bpd", "--n", "12", "--steps", "10", "--out-dir", tmp_path)
    assert respaced["bpd"]["steps"] == 10
    q = eval_json(capsys, trained_run, "--fid", "--n", "40", "--steps", "5")["quality"]
    assert q["n"] == 40 and q["fid"] > 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    run_cli("sample", trained_run, "--n", "30", "--steps", "5", "--out", tmp_path / "s.npz", "--device", "cpu")
    scored = eval_json(capsys, "--samples", tmp_path / "s.npz", "--data", "digits")["quality"]
    assert scored["n"] == 30
    capsys.readouterr()
    run_cli("eval", trained_run, "--bpd", "--n", "4", "--steps", "5", "--out-dir", tmp_path, "--device", "cpu")
    assert "L_0 (decoder)" in capsys.readouterr().out


def test_eval_needs_something_to_measure(trained_run, tmp_path, capsys):
    expect_error(capsys, "eval", trained_run, match="say what to measure")
    np.savez(tmp_path / "x.npz", np.zeros((4, 8, 8, 1), dtype=np.uint8))
    expect_error(capsys, "eval", "--samples", tmp_path / "x.npz", match="needs --data")
    np.savez(tmp_path / "y.npz", np.zeros((4, 16, 16, 1), dtype=np.uint8))
    expect_error(capsys, "eval", "--samples", tmp_path / "y.npz", "--data", "digits", match="expected 8x8")


def test_conditional_training_guidance_and_the_classifier(tmp_path, capsys, trained_run):
    run, clf = tmp_path / "cond", tmp_path / "clf"
    run_cli("train", "--run-dir", run, "--train-steps", "2", "--checkpoint-every", "2", "--class-conditional",
            "--p-uncond", "0.1", *TINY_FLAGS)
    run_cli("sample", run, "--class", "all", "--n", "20", "--guidance", "2", "--steps", "4", "--out",
            tmp_path / "g.npz", tmp_path / "g.png", "--device", "cpu")
    f = np.load(tmp_path / "g.npz")
    assert f["arr_0"].shape == (20, 8, 8, 1) and f["arr_1"].tolist() == [k for k in range(10) for _ in range(2)]
    run_cli("train-classifier", "--run-dir", clf, "--classifier-steps", "3", "--diffusion-steps", "50",
            "--batch-size", "16", "--classifier-channels", "16", "--device", "cpu")
    assert (clf / "classifier.safetensors").exists() and (clf / "metrics.json").exists()
    for sampler in ("ddpm", "ddim"):
        run_cli("sample", run, "--class", "3", "--n", "4", "--classifier", clf, "--classifier-scale", "5",
                "--sampler", sampler, "--steps", "5", "--out", tmp_path / f"c-{sampler}.npz", "--device", "cpu")
        assert np.load(tmp_path / f"c-{sampler}.npz")["arr_1"].tolist() == [3] * 4
    # Classifier guidance also steers an unconditional model.
    run_cli("sample", trained_run, "--class", "1", "--n", "2", "--classifier", clf, "--steps", "5",
            "--out", tmp_path / "u.npz", "--device", "cpu")
    q = eval_json(capsys, run, "--fid", "--n", "20", "--steps", "4", "--guidance", "1")["quality"]
    assert q["accuracy"] is not None and 0 <= q["accuracy"] <= 1
    expect_error(capsys, "sample", trained_run, "--guidance", "2", match="class-conditional")
    expect_error(capsys, "sample", trained_run, "--class", "3", match="--class needs a class-conditional run")
    expect_error(capsys, "sample", run, "--class", "12", match="--class must be")
    wrong = tmp_path / "clf-wrong"
    run_cli("train-classifier", "--run-dir", wrong, "--classifier-steps", "2", "--diffusion-steps", "40",
            "--batch-size", "8", "--classifier-channels", "16", "--device", "cpu")
    expect_error(capsys, "sample", run, "--classifier", wrong, "--steps", "4", match="schedule")
    expect_error(capsys, "sample", run, "--classifier", tmp_path, match="not a classifier run")
