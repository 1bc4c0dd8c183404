"""Few-step sampling from the command line: --sampler, --nfe and --timesteps on sample, eval and show, and one line
plus exit 2 for each bad choice."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_FLAGS, expect_error
from gaussdiff.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("fewstep") / "run"
    main(["train", "--run-dir", str(path), "--train-steps", "2", "--checkpoint-every", "2", *TINY_FLAGS])
    return path


def test_sample_eval_and_show_with_an_nfe_budget(run, tmp_path, capsys):
    main(["sample", str(run), "--sampler", "dpm++2m", "--nfe", "10", "--n", "4", "--out", str(tmp_path / "a.npz"),
          "--device", "cpu"])
    main(["sample", str(run), "--sampler", "heun", "--nfe", "6", "--timesteps", "karras", "--n", "4", "--out",
          str(tmp_path / "b.npz"), "--device", "cpu"])
    # --eta 0 is every sampler's default, so it is accepted by one that reads no eta
    main(["sample", str(run), "--sampler", "unipc", "--eta", "0", "--timesteps", "49,30,10.5,0", "--n", "4", "--out",
          str(tmp_path / "c.npz"), "--device", "cpu"])
    for name in ("a", "b", "c"):
        images = np.load(tmp_path / f"{name}.npz")["arr_0"]
        assert (images.shape == (4, 8, 8, 1) and images.dtype == np.uint8
                and images.std() > 0)  # not NaN cast to one value
    # What they say of their budget: --nfe's evaluations, or an explicit list's own count (not --steps' default 50).
    infos = {name: str(np.load(tmp_path / f"{name}.npz")["info"]) for name in ("a", "b", "c")}
    assert "dpm++2m, 10 NFE, trailing spacing" in infos["a"] and "heun, 6 NFE, karras spacing" in infos["b"]
    assert "unipc, 4 steps, timesteps 49,30,10.5,0" in infos["c"], infos["c"]
    capsys.readouterr()
    main(["eval", str(run), "--fid", "--sampler", "unipc", "--nfe", "10", "--timesteps", "logsnr", "--n", "20",
          "--json", "--device", "cpu"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["quality"]["n"] == 20
    assert figures["network"] == {"precision": "fp32", "memory_format": "contiguous", "compile": "off",
                                  "measured_seconds_a_call": {}}  # conftest: nothing measured
    main(["eval", str(run), "--fid", "--sampler", "euler-a", "--nfe", "5", "--n", "20", "--seed", "3",
          "--device", "cpu"])
    # every figure says how it was sampled, and in what the network computed (conftest: nothing measured)
    title = capsys.readouterr().out.splitlines()[0]
    assert title == ("sample quality of 20 samples (euler-a, 5 NFE, linspace spacing, EMA weights, seed 3, network in "
                     "fp32, contiguous) against the training split of digits, classifier features")
    main(["show", "trajectory", str(run), "--sampler", "dpm++3m", "--nfe", "8", "--out", str(tmp_path / "t.png"),
          "--device", "cpu"])
    with Image.open(tmp_path / "t.png") as png:  # named by its budget, as sample names it
        assert "dpm++3m, 8 NFE (8 steps), trailing spacing" in png.text["Description"]


def test_bad_sampler_choices_get_one_line(run, capsys):
    expect_error(capsys, "sample", run, "--nfe", "0", match="--nfe must be at least 1")
    expect_error(capsys, "sample", run, "--nfe", "80", match="needs more steps than the run's 50")
    expect_error(capsys, "sample", run, "--timesteps", "10,20", match="decrease strictly")
    expect_error(capsys, "sample", run, "--timesteps", "99,20", match="every time must lie in 0..49")
    expect_error(capsys, "sample", run, "--timesteps", "karas", match="--timesteps must be auto, one of")
    expect_error(capsys, "sample", run, "--timesteps", "40,20", "--nfe", "4", match="do not combine")
    # each would override the --steps given, which would then silently not count
    expect_error(capsys, "sample", run, "--steps", "20", "--nfe", "4", match="--steps and --nfe do not combine")
    expect_error(capsys, "sample", run, "--steps", "20", "--timesteps", "40,20", match="--steps and an explicit")
    expect_error(capsys, "eval", run, "--fid", "--steps", "20", "--nfe", "4", match="--steps and --nfe do not combine")
    expect_error(capsys, "show", "trajectory", run, "--steps", "20", "--nfe", "4", match="--steps and --nfe")
    expect_error(capsys, "sample", run, "--sampler", "dpm++9m", match="dpm++9m")


def test_tune_saves_steps_that_sample_and_eval_then_use(run, tmp_path, capsys):
    main(["tune", str(run), "--sampler", "dpm++2m", "--nfe", "4", "--n", "4", "--evals", "12", "--reference-nfe", "20",
          "--device", "cpu"])
    assert "wrote" in capsys.readouterr().out
    saved = json.loads(next(run.glob("**/timesteps.json")).read_text())["dpm++2m@4"]
    assert len(saved["timesteps"]) == 4 and saved["evals"] <= 12
    main(["eval", str(run), "--fid", "--sampler", "dpm++2m", "--nfe", "4", "--n", "20", "--device", "cpu"])
    assert "(dpm++2m, 4 NFE, steps tuned by gaussdiff tune (timesteps.json), EMA weights" in capsys.readouterr().out
    main(["eval", str(run), "--fid", "--sampler", "dpm++2m", "--nfe", "5", "--n", "20", "--device", "cpu"])
    # nothing tuned for 5: its default
    assert "(dpm++2m, 5 NFE, trailing spacing, EMA weights, seed 0, network in fp32, contiguous)" in \
        capsys.readouterr().out
    expect_error(capsys, "tune", run, "--sampler", "euler-a", match="stochastic")
    expect_error(capsys, "tune", run, "--sampler", "heun", "--nfe", "4", match="odd --nfe")
    expect_error(capsys, "tune", run, "--nfe", "1", match="tuning needs 2..50")
    expect_error(capsys, "tune", run, "--nfe", "8", "--reference-nfe", "8", match="must exceed every --nfe")
    # A damaged timesteps.json is one line, not a silent fall back to untuned steps; so is an entry of the wrong size.
    tuned = next(run.glob("**/timesteps.json"))
    good = tuned.read_text()
    tuned.write_text("{bad")
    expect_error(capsys, "sample", run, "--sampler", "dpm++2m", "--nfe", "4", match="not readable JSON")
    entry = json.loads(good)
    entry["dpm++2m@4"]["timesteps"] = entry["dpm++2m@4"]["timesteps"][:1]
    tuned.write_text(json.dumps(entry))
    expect_error(capsys, "sample", run, "--sampler", "dpm++2m", "--nfe", "4", match="1 times, where dpm++2m at 4 NFE")
    tuned.write_text(json.dumps({**json.loads(good), "dpm++2m@4": None}))  # not "untuned"
    expect_error(capsys, "sample", run, "--sampler", "dpm++2m", "--nfe", "4",
                 match="the entry 'dpm++2m@4' is null, not what gaussdiff tune writes")
    tuned.write_text(good)


def test_a_checkpoint_without_the_tuned_steps_of_an_older_one_says_so(run, tmp_path, capsys):
    """Tuned steps belong to the weights they were tuned for: after training on, the newest checkpoint has none and
    samples its default spacing, and says that an older checkpoint has them (it was silent)."""
    extended = tmp_path / "run"
    shutil.copytree(run, extended)
    main(["tune", str(extended), "--sampler", "unipc", "--nfe", "3", "--n", "4", "--evals", "8", "--reference-nfe",
          "10", "--device", "cpu"])
    (extended / "checkpoints" / "step-0000002").rename(extended / "checkpoints" / "step-0000001")
    shutil.copytree(extended / "checkpoints" / "step-0000001", extended / "checkpoints" / "step-0000002",
                    ignore=shutil.ignore_patterns("timesteps.json"))  # as if trained on since the tuning
    capsys.readouterr()
    main(["sample", str(extended), "--sampler", "unipc", "--nfe", "3", "--n", "2", "--out", str(tmp_path / "s.npz"),
          "--device", "cpu"])
    assert ("step-0000002 has no steps tuned for this sampler and --nfe (step-0000001 has; they fit its weights): "
            "sampling on trailing spacing") in capsys.readouterr().err
    assert "unipc, 3 NFE, trailing spacing" in str(np.load(tmp_path / "s.npz")["info"])
    main(["sample", str(extended), "--sampler", "unipc", "--nfe", "4", "--n", "2", "--out", str(tmp_path / "s.npz"),
          "--device", "cpu"])
    assert "note" not in capsys.readouterr().err  # nothing tuned at 4 NFE anywhere: nothing to say


def test_the_sampling_network_is_named_unless_it_is_plain_fp32(capsys):
    """One line on stderr when the setup was measured or is not plain fp32 (bf16, channels_last, compiled: a resumed
    run's record, say), so that samples never come from an unnamed setup; nothing for plain calls."""
    from gaussdiff.cli.options import report_setup
    from gaussdiff.nets.fast import Setup

    report_setup(Setup(), {})
    assert capsys.readouterr().err == ""
    report_setup(Setup("bf16", "contiguous", "default"), {})
    assert capsys.readouterr().err == "gaussdiff: sampling network: bf16, contiguous, compiled (default)\n"
    # bf16 kept out at 0.9x fp32's time: the line gives the margin it missed, so the choice does not read as a slip
    report_setup(Setup(), {Setup(): 0.5, Setup("bf16"): 0.45})
    assert ("fp32, contiguous (measured, s a call: fp32/contiguous 0.5, bf16/contiguous 0.45; bf16 at <= 0.85x "
            "fp32's)") in capsys.readouterr().err
    report_setup(Setup(), {Setup(): 0.112, Setup("fp32", "channels_last"): 0.109})
    assert capsys.readouterr().err.endswith("0.109; channels_last taken at <= 0.95x contiguous's time)\n")


def test_eval_names_the_weights_its_figures_come_from(conditional_trained):
    """A run's EMA weights; a run trained without EMA (--ema-decay None) has only its raw weights, and a diffusers
    folder only the weights it was saved with: each figure must not claim EMA it does not have."""
    from dataclasses import replace

    from gaussdiff.cli.eval import weights_of

    c = conditional_trained.config
    no_ema = replace(c, train=replace(c.train, optim=replace(c.train.optim, ema_decay=None)))
    assert c.train.optim.ema_decay is not None and weights_of(conditional_trained) == "EMA weights"
    assert weights_of(replace(conditional_trained, config=no_ema)) == "weights (no EMA kept)"
    assert weights_of(replace(conditional_trained, source="diffusers")) == "the folder's weights"


def test_an_nfe_is_refused_exactly_when_it_needs_more_steps_than_the_run_has():
    """--nfe's steps may be all of the run's T = 50 steps, not one more: DDIM's N evaluations are N steps; Heun's
    98 are 50 steps (one Euler step first, then 2 evaluations a step and 1 on the last), its 99 are 51."""
    from types import SimpleNamespace

    from gaussdiff.cli.options import check_nfe
    from gaussdiff.errors import UsageError

    trained = SimpleNamespace(diffusion=SimpleNamespace(num_steps=50))
    for sampler, most in (("ddim", 50), ("heun", 98)):
        check_nfe(most, sampler, trained)
        with pytest.raises(UsageError, match="needs more steps than the run's 50"):
            check_nfe(most + 1, sampler, trained)


def test_tune_refuses_what_it_cannot_measure_in_one_line(run, monkeypatch, capsys):
    """Each bad choice of gaussdiff tune is one line naming it, before any solve: no draws, a reference too coarse
    or finer than the run's 50 steps, a budget needing more steps than the run has or not below the reference (every
    budget counts, not only the first); a zero-terminal-SNR run refuses a sampler in sigma, and a super-resolution
    stage (which needs low-resolution images to tune on) is refused."""
    from dataclasses import replace

    import gaussdiff.cli.tune as tune
    from gaussdiff import GaussianDiffusion, NoiseSchedule
    from gaussdiff.training import load_trained

    expect_error(capsys, "tune", run, "--n", "0", match="--n must be at least 1")
    expect_error(capsys, "tune", run, "--reference-nfe", "1", match="--reference-nfe must be at least 2, not 1")
    expect_error(capsys, "tune", run, "--nfe", "60", "--reference-nfe", "40",
                 match="--nfe 60: unipc would take 60 steps; tuning needs 2..50")
    expect_error(capsys, "tune", run, "--nfe", "4", "--reference-nfe", "51", match="at most the run's 50 steps")
    expect_error(capsys, "tune", run, "--nfe", "4", "30", "--reference-nfe", "20",
                 match="--reference-nfe 20 must exceed every --nfe (up to 30)")
    trained = load_trained(run, device="cpu")
    zero_snr = GaussianDiffusion(NoiseSchedule.cosine(50).rescale_zero_terminal_snr(), prediction="v")
    monkeypatch.setattr(tune, "load_trained", lambda *a, **kw: replace(trained, diffusion=zero_snr))
    expect_error(capsys, "tune", run, "--sampler", "euler", "--device", "cpu", match="--sampler euler runs in sigma")
    c = trained.config
    stage = replace(trained, config=replace(c, super_res=replace(c.super_res, super_res=4)))
    monkeypatch.setattr(tune, "load_trained", lambda *a, **kw: stage)
    expect_error(capsys, "tune", run, "--device", "cpu", match="super-resolution stage")


def test_tune_saves_each_budget_from_its_seeds_draws_at_the_smallest_settings_it_accepts(run, tmp_path, monkeypatch,
                                                                                         capsys):
    """--evals 8 (MIN_EVALS) and --reference-nfe 50 (all of the run's steps) are accepted. Each budget of --nfe 3 4
    is tuned and saved under its own key with its own number of steps; the draws are --n of --seed's generator, and
    the reference shared by the budgets is exactly the one tune_timesteps would solve for itself (same weights,
    conditions and clipping)."""
    import shutil

    import torch

    import gaussdiff.cli.tune as tune

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    real, calls = tune.tune_timesteps, []

    def checked(model, diffusion, sampler, nfe, x_T, cond, *args, reference=None):
        calls.append((nfe, x_T))
        tuned = real(model, diffusion, sampler, nfe, x_T, cond, *args, reference=reference)
        assert tuned == real(model, diffusion, sampler, nfe, x_T, cond, *args, progress=False)
        return tuned

    monkeypatch.setattr(tune, "tune_timesteps", checked)
    main(["tune", str(copy), "--sampler", "ddim", "--nfe", "3", "4", "--n", "4", "--evals", "8", "--reference-nfe",
          "50", "--seed", "7", "--device", "cpu"])
    draws = torch.randn((4, 1, 8, 8), generator=torch.Generator("cpu").manual_seed(7))
    assert [nfe for nfe, _ in calls] == [3, 4] and all(torch.equal(x_T, draws) for _, x_T in calls)
    saved = json.loads(next(copy.glob("**/timesteps.json")).read_text())
    for nfe in (3, 4):
        entry = saved[f"ddim@{nfe}"]
        assert (entry["nfe"], len(entry["timesteps"]), entry["batch"], entry["seed"]) == (nfe, nfe, 4, 7)
        assert entry["evals"] <= 8 and entry["reference_nfe"] == 50 and entry["weights"] == "ema"


def test_tune_no_ema_tunes_the_raw_weights_and_saves_them_apart(run, tmp_path, monkeypatch, capsys):
    """--no-ema loads the raw weights, and saves under the raw-weights key (marked raw), which sample --no-ema then
    uses; the EMA key stays untuned. The --evals given is the budget tuning spends."""
    import shutil

    import gaussdiff.cli.tune as tune

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    asked, real = [], tune.load_trained
    monkeypatch.setattr(tune, "load_trained", lambda path, ema, device: asked.append(ema) or real(path, ema=ema,
                                                                                                  device=device))
    main(["tune", str(copy), "--no-ema", "--sampler", "unipc", "--nfe", "3", "--n", "4", "--evals", "12",
          "--reference-nfe", "20", "--device", "cpu"])
    assert asked == [False]
    saved = json.loads(next(copy.glob("**/timesteps.json")).read_text())
    assert "unipc@3" not in saved and saved["unipc@3 (raw weights)"]["weights"] == "raw"
    # --evals is the budget the search gets: past the 7 trials of starts and judgements, Nelder-Mead's first simplex
    # on 3 steps takes 4 more (scipy evaluates all of it), so 12 gives 11 or 12 trials, not the least (8)
    assert 11 <= saved["unipc@3 (raw weights)"]["evals"] <= 12
    for flag, how in (("--no-ema", "steps tuned by gaussdiff tune"), ("--ema", "trailing spacing")):
        main(["sample", str(copy), flag, "--sampler", "unipc", "--nfe", "3", "--n", "2", "--out",
              str(tmp_path / "s.npz"), "--device", "cpu"])
        assert how in str(np.load(tmp_path / "s.npz")["info"])
