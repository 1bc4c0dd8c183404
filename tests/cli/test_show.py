"""`gaussdiff show`: the forward-process strip and a sampling run's trajectory, their pictures' rows caught."""

from pathlib import Path

import pytest
import torch

import gaussdiff.cli.show as show
from conftest import TINY_FLAGS, expect_error
from gaussdiff.cli import main
from gaussdiff.data.datasets import load_data
from gaussdiff.diffusion.process import DiffusionConfig
from gaussdiff.samplers.run import sample
from gaussdiff.training.run import load_trained


@pytest.fixture
def strips(monkeypatch):
    """What show hands save_strips: its rows, column labels, row labels and caption (no PNG drawn)."""
    seen = {}

    def catch(rows, path, column_labels, row_labels=(), caption=""):
        seen.update(rows=rows, columns=list(column_labels), row_labels=list(row_labels), caption=caption)
        return path

    monkeypatch.setattr(show, "save_strips", catch)
    return seen


def test_forward_rows_are_q_samples_of_each_image_with_its_own_noise(strips, tmp_path):
    """DDPM Eq. 4: row i, column t is sqrt(abar_t) x0_i + sqrt(1 - abar_t) eps_i on the default cosine schedule of
    1000 steps, eps = randn([n, C, H, W]) from a generator seeded with --seed (each image its own noise), as uint8.
    abar from the cosine schedule's betas (Nichol & Dhariwal Eq. 17): the product of 1 - beta up to t."""
    main(["show", "forward", "--index", "3", "5", "--t", "0", "300", "700", "--seed", "2",
          "--out", str(tmp_path / "f.png")])
    x0 = load_data("digits").images[[3, 5]].double() / 127.5 - 1
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2)).double()
    betas = DiffusionConfig(diffusion_steps=1000, schedule="cosine").build().schedule.betas.double()
    abar = torch.cumprod(1 - betas, 0)
    assert strips["columns"] == ["t=0", "t=300", "t=700"] and len(strips["rows"]) == 2
    assert "cosine schedule of 1000 steps, noise seed 2" in strips["caption"]
    for i in range(2):
        t = torch.tensor([0, 300, 700])
        x_t = abar[t].sqrt().view(-1, 1, 1, 1) * x0[i] + (1 - abar[t]).sqrt().view(-1, 1, 1, 1) * eps[i]
        expected = ((x_t.clamp(-1, 1) + 1) * 127.5).round()
        assert (strips["rows"][i].double() - expected).abs().max() <= 1  # float32 against float64: one level at most


def test_forward_refuses_a_negative_index(capsys, tmp_path):
    """Python would read index -1 as the last image; show names the images 0..N-1 and refuses the rest."""
    out = tmp_path / "f.png"
    expect_error(capsys, "show", "forward", "--index", "-1", "--out", out, match="--index -1 is outside 0..")
    n = len(load_data("digits"))  # the training split, as the strip reads
    expect_error(capsys, "show", "forward", "--index", n, "--out", out, match=f"--index {n} is outside 0..{n - 1}")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("show") / "run"
    main(["train", "--run-dir", str(run), "--train-steps", "1", "--checkpoint-every", "1", *TINY_FLAGS])
    return run


def test_trajectory_shows_x_t_then_the_x0_estimate_at_evenly_spread_steps_of_the_seeded_run(run, strips, tmp_path):
    """--frames 3 of a 4-step run: steps 0, 2 and 3 (round(linspace(0, 3, 3)), the first and last included); per
    sample a row of x_t, then a row of the x0 estimate, of the very run the library draws with the generator seeded
    by --seed (a network of one training step: any trajectory would do, only which one is drawn matters)."""
    main(["show", "trajectory", str(run), "--n", "2", "--frames", "3", "--steps", "4", "--sampler", "ddim",
          "--seed", "5", "--out", str(tmp_path / "t.png"), "--device", "cpu"])
    trained = load_trained(run)
    steps = []
    sample(trained.model, trained.diffusion, (2, 1, 8, 8), sampler="ddim", steps=4,
           generator=torch.Generator().manual_seed(5), clip_denoised=trained.clip_denoised, callback=steps.append,
           progress=False)
    shown = [steps[i] for i in (0, 2, 3)]
    assert strips["columns"] == [f"t={int(s.t[0])}" for s in shown]
    assert strips["row_labels"] == ["x_t", "x0 est.", "x_t", "x0 est."]
    for j in range(2):
        torch.testing.assert_close(strips["rows"][2 * j], trained.images_of(torch.stack([s.x_t[j] for s in shown])),
                                   rtol=0, atol=0)
        torch.testing.assert_close(strips["rows"][2 * j + 1], trained.images_of(torch.stack([s.x0[j] for s in shown])),
                                   rtol=0, atol=0)
    assert "ddim, 4 steps" in strips["caption"] and "seed 5: 3 of the steps shown" in strips["caption"]
