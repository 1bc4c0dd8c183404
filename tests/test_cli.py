"""The gaussdiff command: the tour of the README, and one line plus exit 2 for every bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_FLAGS
from gaussdiff.cli import main


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
