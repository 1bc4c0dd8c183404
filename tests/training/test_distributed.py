"""Data-parallel training under torchrun (gloo, 2 CPU processes) computes what one process computes.

The identity: at one global batch and seed, every rank draws the whole batch's conditions, t and noise
and keeps its part, and DDP averages the ranks' gradients of their part's mean loss, which is the
gradient of the global mean. So the losses and weights of N ranks equal one process's up to the order
of float32 sums (~1e-7 relative; the assertions allow 1e-5), and since the data order and the
generators' states are functions of the step, a run may resume under a different number of ranks.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_FLAGS
from gaussdiff.cli import main
from gaussdiff.training.checkpoint import list_checkpoints
from gaussdiff.training.run import load_trained

FLAGS = [*TINY_FLAGS, "--log-every", "1", "--sample-every", "100", "--checkpoint-every", "3",
         "--lr-schedule", "constant"]


def torchrun(nproc: int, *args, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "gaussdiff", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def assert_close_losses(a: dict[int, float], b: dict[int, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert abs(a[k] - b[k]) <= 1e-5 * abs(a[k]), (k, a[k], b[k])


def assert_same_networks(a: Path, b: Path) -> None:
    """The trained networks (raw and EMA) compute the same function. Weights are compared through their
    outputs: a bias right before a GroupNorm has a gradient of pure rounding noise (the norm removes it), which
    Adam scales up to steps of the learning rate, so such weights differ between any two summation orders
    while the function does not."""
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.tensor([0.0, 10.0, 25.0, 49.0])
    for ema in (False, True):
        na, nb = load_trained(a, ema=ema).model, load_trained(b, ema=ema).model
        with torch.no_grad():
            torch.testing.assert_close(na(x, t), nb(x, t), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, six steps."""
    run = tmp_path_factory.mktemp("ddp") / "single"
    main(["train", "--run-dir", str(run), *FLAGS, "--train-steps", "6"])
    return run


def test_two_ranks_take_the_steps_of_one_process(single, tmp_path):
    torchrun(2, "train", "--run-dir", tmp_path / "two", *FLAGS, "--train-steps", "6")
    assert_close_losses(losses(tmp_path / "two"), losses(single))
    assert_same_networks(tmp_path / "two", single)
    # Rank 0 alone wrote: one metrics row per step, one set of checkpoints.
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 6
    assert [p.name for p in list_checkpoints(tmp_path / "two")] == ["step-0000003", "step-0000006"]


def test_the_gradients_fill_the_buckets_without_a_copy(tmp_path):
    """At 16 images a rank oneDNN returns the attention's 1x1 weight gradients in channels_last strides; the weights
    are strided so, and DDP's buckets with them, where a mismatch was a warning and a copy at every step."""
    done = torchrun(2, "train", "--run-dir", tmp_path / "b", *FLAGS, "--batch-size", "32", "--train-steps", "1")
    assert "Grad strides do not match bucket view strides" not in done.stderr


def test_a_run_resumes_under_two_ranks_and_under_one(single, tmp_path):
    """Three steps under 2 ranks, then the rest under 2 ranks, or under 1 process: both equal the single run."""
    torchrun(2, "train", "--run-dir", tmp_path / "half", *FLAGS, "--train-steps", "3")
    shutil.copytree(tmp_path / "half", tmp_path / "then-one")
    torchrun(2, "train", "--run-dir", tmp_path / "half", "--resume", "--train-steps", "6")
    main(["train", "--run-dir", str(tmp_path / "then-one"), "--resume", "--train-steps", "6"])
    for run in ("half", "then-one"):
        assert_close_losses(losses(tmp_path / run), losses(single))
        assert_same_networks(tmp_path / run, single)


def test_a_global_batch_the_ranks_cannot_share_is_one_line(tmp_path):
    done = torchrun(2, "train", "--run-dir", tmp_path / "odd", *FLAGS, "--batch-size", "7", check=False)
    lines = [line for line in done.stderr.splitlines() if line.startswith("gaussdiff: error:")]
    assert done.returncode != 0 and lines and "--batch-size 7 is the global batch" in lines[0], done.stderr[-2000:]
    # torchrun's agent reports the failed workers with its own traceback; the workers print none.
    assert "gaussdiff/" not in "".join(line for line in done.stderr.splitlines() if line.strip().startswith("File "))


def test_the_classifier_and_the_autoencoder_train_under_two_ranks_as_in_one(tmp_path):
    """The other trainers split the global batch the same way: the noise-aware classifier's held-out accuracies
    and the autoencoder's logged losses equal one process's."""
    classifier = ["train-classifier", "--classifier-steps", "3", "--diffusion-steps", "50", "--batch-size", "16",
                  "--channels", "16", "--device", "cpu"]
    main([*classifier, "--run-dir", str(tmp_path / "c1")])
    torchrun(2, *classifier, "--run-dir", tmp_path / "c2")
    a, b = (json.loads((tmp_path / c / "metrics.json").read_text()) for c in ("c1", "c2"))
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a), (a, b)
    autoencoder = ["train-autoencoder", "--data", "digits", "--factor", "2", "--channels", "8", "--latent-channels",
                   "2", "--batch-size", "8", "--train-steps", "4", "--log-every", "1", "--sample-every", "4",
                   "--checkpoint-every", "2", "--device", "cpu"]
    main([*autoencoder, "--run-dir", str(tmp_path / "a1")])
    torchrun(2, *autoencoder, "--run-dir", tmp_path / "a2")
    assert_close_losses(losses(tmp_path / "a1"), losses(tmp_path / "a2"))
    assert [p.name for p in list_checkpoints(tmp_path / "a2")] == ["step-0000002", "step-0000004"]
    assert (tmp_path / "a2" / "autoencoder.safetensors").exists() and (tmp_path / "a2" / "metrics.json").exists()


def launch(nproc: int, *args, restarts: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "--max-restarts", str(restarts), "-m", "gaussdiff", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def worker(agent: subprocess.Popen, index: int) -> int:
    """The pid of one of torchrun's workers (the children of its agent)."""
    return int(Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()[index])


def wait_for_rows(run: Path, rows: int, agent: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while len(losses(run)) < rows if (run / "metrics.jsonl").exists() else True:
        assert agent.poll() is None and time.monotonic() < deadline, "the run ended before the fault"
        time.sleep(0.05)


LONG = [*FLAGS, "--train-steps", "120", "--checkpoint-every", "20"]


def test_torchrun_restarts_a_job_whose_worker_died_and_it_resumes_from_its_checkpoint(tmp_path):
    """A worker killed near step 40 of 120 (some 10 s before the end): torchrun restarts both ranks, which resume
    from the last checkpoint (every 20 steps) and log the losses of an uninterrupted run."""
    torchrun(2, "train", "--run-dir", tmp_path / "whole", *LONG)
    agent = launch(2, "train", "--run-dir", tmp_path / "faulted", *LONG, restarts=1)
    wait_for_rows(tmp_path / "faulted", 40, agent)
    os.kill(worker(agent, 1), signal.SIGKILL)  # a lost node
    _, err = agent.communicate(timeout=300)
    assert agent.returncode == 0, err[-2000:]
    assert err.count("run ") >= 2, "the job was restarted"
    assert losses(tmp_path / "faulted") == losses(tmp_path / "whole")


def test_a_hung_rank_ends_the_job_within_the_timeout_with_one_line(tmp_path):
    """SIGSTOP one worker: the other waits --dist-timeout (5 s) in its next collective, says so in one line and
    exits; torchrun then stops the hung one (after its own 30 s grace)."""
    agent = launch(2, "train", "--run-dir", tmp_path / "run", *LONG, "--train-steps", "100000", "--dist-timeout", "5")
    wait_for_rows(tmp_path / "run", 30, agent)
    start = time.monotonic()
    os.kill(worker(agent, 1), signal.SIGSTOP)
    _, err = agent.communicate(timeout=120)
    assert agent.returncode != 0 and time.monotonic() - start < 5 + 30 + 20
    ours = [line for line in err.splitlines() if line.startswith("gaussdiff: error:")]
    assert len(ours) == 1 and "rank 0: no answer from another rank within --dist-timeout" in ours[0], err[-2000:]
    assert "step-" in ours[0]  # it names the checkpoint to resume from


def test_loss_aware_timesteps_see_every_ranks_losses(tmp_path):
    """The importance sampler of t (Nichol & Dhariwal 2021) learns from the whole global batch's L_vlb, gathered
    from the ranks: once its history fills (10 per t: after 25 steps of 8 on 20 steps) it draws the same t as
    one process, so the losses still agree."""
    flags = [*FLAGS, "--diffusion-steps", "20", "--train-steps", "40", "--timestep-sampler", "loss_second_moment",
             "--variance", "learned_range", "--loss", "hybrid"]
    main(["train", "--run-dir", str(tmp_path / "one"), *flags])
    torchrun(2, "train", "--run-dir", tmp_path / "two", *flags)
    assert_close_losses(losses(tmp_path / "one"), losses(tmp_path / "two"))


def test_a_rank_takes_its_share_and_its_slice_of_a_global_batch():
    """Without starting processes: rank r of N takes B / N examples, rows r B / N .. (r + 1) B / N - 1, so the ranks'
    slices tile the global batch in order; B not divisible by N is refused."""
    from gaussdiff.errors import ConfigError
    from gaussdiff.training.distributed import Distributed

    batch = torch.arange(12)
    slices = [Distributed(rank=r, world_size=3).part(batch) for r in range(3)]
    assert [Distributed(rank=r, world_size=3).share(12) for r in range(3)] == [4, 4, 4]
    assert torch.equal(torch.cat(slices), batch) and slices[1].tolist() == [4, 5, 6, 7]
    with pytest.raises(ConfigError, match="must divide among the 3 processes"):
        Distributed(rank=0, world_size=3).share(10)
