"""Latent diffusion from the command line: train-autoencoder, train --latent, sample, eval, show; bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_FLAGS, expect_error
from gaussdiff.cli import main
from gaussdiff.training import load_trained

AE_FLAGS = ["--data", "digits", "--factor", "2", "--channels", "8", "--latent-channels", "2", "--batch-size", "8",
            "--train-steps", "4", "--log-every", "2", "--sample-every", "4", "--checkpoint-every", "4",
            "--device", "cpu"]



@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ae") / "run"
    main(["train-autoencoder", "--run-dir", str(run), *AE_FLAGS, "--gan-start", "2"])
    return run


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, autoencoder_run) -> Path:
    run = tmp_path_factory.mktemp("latent") / "run"
    main(["train", "--run-dir", str(run), "--latent", str(autoencoder_run), *TINY_FLAGS, "--attention-resolutions",
          "2", "--train-steps", "2", "--checkpoint-every", "2", "--sample-every", "2", "--class-conditional",
          "--p-uncond", "0.2"])
    return run


def test_the_autoencoder_run_holds_its_weights_scale_pictures_and_figures(autoencoder_run, capsys):
    for name in ("autoencoder.safetensors", "latent.json", "config.json", "metrics.json", "reconstructions.png",
                 "loss.png", "metrics.jsonl"):
        assert (autoencoder_run / name).exists(), name
    assert json.loads((autoencoder_run / "latent.json").read_text())["scale"] > 0
    capsys.readouterr()
    main(["eval", str(autoencoder_run), "--json", "--device", "cpu"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["reconstruction"]
    assert report == json.loads((autoencoder_run / "metrics.json").read_text())
    assert report["n"] == 179 and report["psnr"] > 0 and report["fid"] > report["fid_originals"] > 0


def test_a_latent_run_trains_samples_and_is_measured(latent_run, autoencoder_run, tmp_path, capsys):
    trained = load_trained(latent_run)
    assert trained.latent is not None and trained.sample_shape == (2, 4, 4)
    assert trained.config.latent.latent == autoencoder_run and len(trained.config.latent.latent_sha256) == 64
    assert (latent_run / "samples.png").exists()
    for sampler in ("ddpm", "ddim"):
        main(["sample", str(latent_run), "--class", "all", "--n", "10", "--guidance", "2", "--sampler", sampler,
              "--steps", "3", "--out", str(tmp_path / f"{sampler}.npz"), "--device", "cpu"])
        images = np.load(tmp_path / f"{sampler}.npz")["arr_0"]
        assert images.shape == (10, 8, 8, 1) and images.dtype == np.uint8  # decoded to pixels
    capsys.readouterr()
    main(["eval", str(latent_run), "--fid", "--bpd", "--n", "20", "--steps", "3", "--json", "--out-dir",
          str(tmp_path), "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["quality"]["n"] == 20 and figures["latent"] == str(autoencoder_run)
    main(["eval", str(latent_run), "--bpd", "--n", "4", "--steps", "3", "--out-dir", str(tmp_path), "--device", "cpu"])
    assert "not image bits/dim" in capsys.readouterr().out
    main(["show", "trajectory", str(latent_run), "--n", "2", "--frames", "2", "--steps", "3", "--out",
          str(tmp_path / "t.png"), "--device", "cpu"])
    assert (tmp_path / "t.png").exists()


def test_a_latent_run_refuses_a_changed_or_mismatched_autoencoder(autoencoder_run, latent_run, tmp_path, capsys,
                                                                   image_folder):
    expect_error(capsys, "train", "--latent", autoencoder_run, "--data", image_folder, "--image-size", "8",
                 *TINY_FLAGS, match="an autoencoder of 1-channel 8x8 images")
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in autoencoder_run.iterdir():
        if f.is_file():
            (changed / f.name).write_bytes(f.read_bytes())
    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), "--latent", str(changed), *TINY_FLAGS, "--attention-resolutions", "2",
          "--train-steps", "1", "--checkpoint-every", "1", "--sample-every", "1"])
    retrained = tmp_path / "retrained"
    main(["train-autoencoder", "--run-dir", str(retrained), *AE_FLAGS, "--seed", "1"])
    (changed / "autoencoder.safetensors").write_bytes((retrained / "autoencoder.safetensors").read_bytes())
    expect_error(capsys, "sample", run, "--n", "2", "--out", tmp_path / "s.png", "--device", "cpu",
                 match="weights changed since this run was trained")


def test_bad_autoencoder_input_gets_one_line(tmp_path, capsys, autoencoder_run, latent_run):
    expect_error(capsys, "train", "--latent", tmp_path / "nowhere", *TINY_FLAGS, match="not a finished autoencoder run")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in autoencoder_run.iterdir():
        if f.is_file():
            (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "autoencoder.safetensors").write_bytes(b"junk")
    expect_error(capsys, "train", "--latent", corrupt, *TINY_FLAGS, match="cannot read weights")
    for command in (["sample", autoencoder_run, "--device", "cpu"], ["show", "trajectory", autoencoder_run],
                    ["export", autoencoder_run, "--diffusers", tmp_path / "d"]):
        expect_error(capsys, *command,  # what it is, not "damaged"
                     match="an autoencoder run (gaussdiff train-autoencoder; train a diffusion model in its latents")
    # and the other way round: a diffusion run named as such, not a list of fields an autoencoder does not know
    expect_error(capsys, "train-autoencoder", "--resume", "--run-dir", latent_run,
                 match="a diffusion run (gaussdiff train; sample it with gaussdiff sample DIR), not an autoencoder run")
    # eval measures an autoencoder's reconstructions; the diffusion measures asked of it were silently skipped
    expect_error(capsys, "eval", autoencoder_run, "--bpd", "--ode", "--device", "cpu",
                 match="is an autoencoder run: eval measures its reconstructions (PSNR, FID), not --bpd or --ode")
    expect_error(capsys, "train-autoencoder", "--run-dir", tmp_path / "f", *AE_FLAGS, "--data", "fashion-mnist",
                 "--factor", "8", match="--factor 8 does not divide the 28x28 images")


def test_a_text_run_in_latent_space_trains_samples_and_is_measured(autoencoder_run, tmp_path, capsys):
    run = tmp_path / "text-latent"
    main(["train", "--run-dir", str(run), "--latent", str(autoencoder_run), *TINY_FLAGS, "--attention-resolutions",
          "2", "--train-steps", "2", "--checkpoint-every", "2", "--sample-every", "2", "--text", "--p-uncond", "0.2",
          "--text-width", "16", "--text-layers", "1"])
    trained = load_trained(run)
    assert trained.latent is not None and trained.sample_shape == (2, 4, 4) and trained.model.text is not None
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the digit three\na handwritten eight\n")
    main(["sample", str(run), "--prompt-file", str(prompts), "--n", "4", "--guidance", "3", "--steps", "3",
          "--out", str(tmp_path / "s.npz"), str(tmp_path / "s.png"), "--device", "cpu"])
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:  # decoded to pixels, a prompt per sample
        assert (f["arr_0"].shape == (4, 8, 8, 1)
                and f["prompts"].tolist()[::2] == ["the digit three", "a handwritten eight"])
    capsys.readouterr()
    main(["eval", str(run), "--fid", "--n", "10", "--steps", "2", "--json", "--device", "cpu"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["quality"]["n"] == 10


def test_a_streamed_latent_run_encodes_each_batch_as_a_cached_one_does(autoencoder_run, tmp_path):
    """Streaming, a latent run encodes each step's decoded batch (nothing cached): the same latents as encoding
    the whole folder once, so the same losses to rounding."""
    from PIL import Image

    from conftest import tiny_config
    from gaussdiff.data import load_data
    from gaussdiff.training.trainer import Trainer

    folder = tmp_path / "digits"
    folder.mkdir()
    for i, image in enumerate(load_data("digits").images[:24]):
        Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    runs = {}
    for stream in ("memory", "stream"):
        cfg = tiny_config(steps=4, **{"data.data": str(folder), "data.image_size": 8, "data.image_channels": 1,
                                      "data.stream": stream, "data.workers": 0, "latent.latent": autoencoder_run,
                                      "model.attention_resolutions": (2,)})
        trainer = Trainer(cfg, tmp_path / stream, progress=False)
        assert (trainer.latents is None) == (stream == "stream")
        runs[stream] = trainer.run().losses
    assert runs["stream"] == pytest.approx(runs["memory"], rel=1e-5)


def test_an_interrupted_autoencoder_run_keeps_its_step_and_a_resume_extends_it(tmp_path, monkeypatch, capsys):
    """SIGTERM (or Ctrl-C) stops train-autoencoder at the end of the step with a checkpoint, as train does; a
    resume may lengthen the run (--train-steps) and refuses to change its networks."""
    import os
    import signal

    from gaussdiff.training import list_checkpoints
    from gaussdiff.training.autoencoder import AutoencoderTrainer

    real, sent = AutoencoderTrainer.train_step, []

    def preempted(self):
        if self.step == 1 and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        return real(self)

    monkeypatch.setattr(AutoencoderTrainer, "train_step", preempted)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train-autoencoder", "--run-dir", str(run), *AE_FLAGS])
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002"]  # not the step-0 start, not lost
    assert "stopped by SIGTERM at step 2" in capsys.readouterr().err
    expect_error(capsys, "train-autoencoder", "--run-dir", run, "--resume", "--latent-channels", "3",
                 match="keeps its --latent-channels")
    main(["train-autoencoder", "--run-dir", str(run), "--resume", "--train-steps", "6"])
    assert list_checkpoints(run)[-1].name == "step-0000006" and (run / "autoencoder.safetensors").exists()
    assert json.loads((list_checkpoints(run)[-1] / "config.json").read_text())["train_steps"] == 6
    # Fewer steps than the run has made: refused before anything is written over its config (the run finished
    # with weights of 6 steps under a config that said 4).
    before = (run / "config.json").read_text()
    expect_error(capsys, "train-autoencoder", "--run-dir", run, "--resume", "--train-steps", "4",
                 match="is at step 6: --train-steps 4 ends before it (give 6 or more")
    assert (run / "config.json").read_text() == before
