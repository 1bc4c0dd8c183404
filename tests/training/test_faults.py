"""Faults lose nothing: kill -9, SIGTERM, a corrupt newest checkpoint, a NaN, a pickle in a checkpoint.

Each test checks the one thing a user depends on: after the fault, the run resumes from a complete
checkpoint and its later losses equal an uninterrupted run's, or the fault is one line and the last
good checkpoint is intact.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_FLAGS, expect_error, override, tiny_config
from gaussdiff.cli import main
from gaussdiff.cli.logger import RunLogger
from gaussdiff.diffusion.process import GaussianDiffusion
from gaussdiff.errors import CheckpointError
from gaussdiff.training.checkpoint import list_checkpoints
from gaussdiff.training.control import Stopped
from gaussdiff.training.trainer import Trainer

BENCH = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


def strict_rows(run: Path) -> list[dict]:
    """metrics.jsonl as strict JSON (a bare NaN or Infinity is an error)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return [json.loads(line, parse_constant=refuse) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in strict_rows(run)}


def test_kill_9_at_random_moments_loses_no_step(tmp_path):
    """bench/faults.py with 3 kills (one in five lands during start-up, the rest mid-step or mid-write)."""
    done = subprocess.run([sys.executable, str(BENCH), "--kills", "3", "--steps", "60", "--json", "--seed", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)
    assert r["corrupt_checkpoints"] == 0 and r["leftover_temporaries"] == 0
    assert r["rows_equal_reference"] and r["max_loss_difference"] == 0, r
    assert r["most_lost_at_once"] <= 2, "checkpoints every 2 steps: at most 2 steps are computed again"


def config(**changes):
    """Six steps, checkpoints every 3, rows every 2; a constant learning rate, so that a run planned shorter
    takes the same first steps as a longer one."""
    return tiny_config(steps=6, **{"train.bookkeeping.checkpoint_every": 3, "train.bookkeeping.log_every": 2,
                                   "train.bookkeeping.sample_every": 100, "train.optim.lr_schedule": "constant",
                                   **changes})


def cli_error(capsys, *args) -> str:
    """Run the CLI once a run has started (its progress goes to stderr too): exit 2, and the last line of
    stderr is the one error line, with no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_sigterm_writes_a_checkpoint_at_the_current_step_and_the_resumed_run_loses_nothing(tmp_path, monkeypatch):
    full = Trainer(config(), tmp_path / "full", progress=False, logger=RunLogger()).run()
    real_step = Trainer.train_step

    def preempted_during_step_5(self):
        if self.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # the scheduler preempts the job mid-step
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", preempted_during_step_5)
    with pytest.raises(Stopped) as stopped:
        Trainer(config(), tmp_path / "cut", progress=False, logger=RunLogger()).run()
    monkeypatch.undo()
    # The step in flight finished, was checkpointed, and nothing after it ran.
    assert stopped.value.step == 5 and stopped.value.signum == signal.SIGTERM
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["step-0000003", "step-0000005"]
    resumed = Trainer(config(), tmp_path / "cut", progress=False, logger=RunLogger()).run(resume=True)
    assert resumed.losses == full.losses[5:]
    # The rows logged every 2 steps straddle the checkpoint at 5 (the row at 6 averages steps 5 and 6):
    # the window is checkpointed, so they equal the uninterrupted run's.
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")


def test_sigterm_from_the_cli_exits_143_with_a_checkpoint(tmp_path, monkeypatch, capsys):
    real_step = Trainer.train_step

    def preempted(self):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", preempted)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path / "run"), *TINY_FLAGS, "--train-steps", "6"])
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-0000002"]
    assert "stopped by SIGTERM at step 2" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "one byte changed", "deleted", "manifest a list",
                                    "manifest entry without bytes", "manifest naming another directory"])
def test_a_damaged_newest_checkpoint_is_reported_and_the_one_before_is_resumed(tmp_path, capsys, damage):
    full = Trainer(config(), tmp_path / "full", progress=False).run()
    Trainer(config(**{"train.train_steps": 5}), tmp_path / "run", progress=False).run()
    newest = list_checkpoints(tmp_path / "run")[-1] / "model.safetensors"
    assert newest.parent.name == "step-0000005"
    data = newest.read_bytes()
    manifest = newest.parent / "manifest.json"
    if damage == "truncated":  # the disk filled up during a copy
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "one byte changed":  # a flipped bit the file's own header cannot see
        newest.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    elif damage == "deleted":
        newest.unlink()
    elif damage == "manifest a list":  # valid JSON, not what gaussdiff writes
        manifest.write_text("[1, 2]")
    elif damage == "manifest entry without bytes":
        manifest.write_text(json.dumps({"model.safetensors": {"sha256": "0"}}))
    else:  # a manifest must name the checkpoint's own files, not send the check elsewhere
        manifest.write_text(json.dumps({"../../x": {"bytes": 1, "sha256": "0"}}))
    capsys.readouterr()
    resumed = Trainer(config(), tmp_path / "run", progress=False).run(resume=True)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "step-0000005" in warning[0] and "resuming from the checkpoint before" in warning[0]
    if damage.startswith("manifest"):  # refused for its form, before any name in it is opened
        assert "malformed manifest" in warning[0], warning
    assert resumed.losses == full.losses[3:]


def test_no_readable_checkpoint_is_one_line(tmp_path, capsys):
    Trainer(config(), tmp_path / "run", progress=False).run()
    for checkpoint in list_checkpoints(tmp_path / "run"):
        (checkpoint / "training.pt").write_bytes(b"not a checkpoint")
    assert "no readable checkpoint" in cli_error(capsys, "train", "--run-dir", tmp_path / "run", "--resume")


def nan_at_step(monkeypatch, bad_step: int) -> list[int]:
    """Make the loss of training step ``bad_step`` (1-based) NaN, as a diverging run would."""
    real = GaussianDiffusion.training_losses
    calls = []

    def losses_with_a_nan(self, *args, **kwargs):
        calls.append(1)
        terms = real(self, *args, **kwargs)
        if len(calls) == bad_step:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(GaussianDiffusion, "training_losses", losses_with_a_nan)
    return calls


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    nan_at_step(monkeypatch, 5)
    line = cli_error(capsys, "train", "--run-dir", tmp_path / "run", *TINY_FLAGS, "--train-steps", "6",
                     "--checkpoint-every", "3")
    assert line.startswith("gaussdiff: error: step 5: non-finite loss or gradient"), line
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-0000003"]
    weights = Trainer(config(), tmp_path / "run", progress=False)
    weights.load(list_checkpoints(tmp_path / "run")[-1])
    assert all(torch.isfinite(p).all() for p in weights.model.parameters())


def test_skip_nonfinite_skips_counts_and_logs_valid_json(tmp_path, monkeypatch):
    nan_at_step(monkeypatch, 3)
    cfg = config(**{"train.skip_nonfinite": 1, "train.bookkeeping.log_every": 1})
    trainer = Trainer(cfg, tmp_path / "run", progress=False, logger=RunLogger())
    result = trainer.run()
    assert result.step == 6 and trainer.skipped == 1
    rows = strict_rows(tmp_path / "run")  # no bare NaN anywhere
    assert [r.get("skipped", 0) for r in rows] == [0, 0, 1, 1, 1, 1]
    assert rows[2]["grad_norm"] is None
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class Payload:
    """Unpickling this would create the file ``path``: what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_pickle_payload_in_a_checkpoint_is_never_executed(tmp_path, capsys):
    Trainer(config(), tmp_path / "run", progress=False).run()
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    victim = tmp_path / "pwned"
    state = torch.load(checkpoint / "training.pt", weights_only=True)
    state["extra"] = Payload(victim)
    with open(checkpoint / "training.pt", "wb") as f:  # torch.save's format, but with a code-running object
        torch.save(state, f, pickle_module=pickle)
    (checkpoint / "manifest.json").unlink()  # as if written by hand, so that only the loader stands in the way
    with pytest.raises(CheckpointError, match="cannot read training state"):
        Trainer(config(), tmp_path / "run", progress=False).load(checkpoint)
    assert not victim.exists()
    # --resume passes over it (one line) to the checkpoint before, and nothing ran.
    capsys.readouterr()
    main(["train", "--run-dir", str(tmp_path / "run"), "--resume", "--train-steps", "7"])
    assert "step-0000006/training.pt: cannot read training state" in capsys.readouterr().err
    assert not victim.exists()


def test_resume_extends_a_finished_run_and_refuses_to_change_what_makes_it(tmp_path, capsys):
    flags = [*TINY_FLAGS, "--checkpoint-every", "3", "--lr-schedule", "constant", "--log-every", "1"]
    main(["train", "--run-dir", str(tmp_path / "long"), *flags, "--train-steps", "6"])
    main(["train", "--run-dir", str(tmp_path / "short"), *flags, "--train-steps", "3"])
    expect_error(capsys, "train", "--run-dir", tmp_path / "short", "--resume", "--channels", "32",
                 match="a resumed run keeps its --channels")
    main(["train", "--run-dir", str(tmp_path / "short"), "--resume", "--train-steps", "6", "--log-every", "1"])
    # With a constant learning rate the extension is the run planned long from the start.
    assert losses(tmp_path / "short") == losses(tmp_path / "long")
    saved = json.loads((list_checkpoints(tmp_path / "short")[-1] / "config.json").read_text())
    assert saved["train"]["train_steps"] == 6  # the change is recorded with the run
    # Fewer steps than the run has made: refused before anything is written over its config.
    before = (tmp_path / "short" / "config.json").read_text()
    expect_error(capsys, "train", "--run-dir", tmp_path / "short", "--resume", "--train-steps", "4",
                 match="is at step 6: --train-steps 4 ends before it (give 6 or more")
    assert (tmp_path / "short" / "config.json").read_text() == before


def test_a_resumed_run_may_change_how_often_it_logs(tmp_path):
    Trainer(config(**{"train.train_steps": 3}), tmp_path / "run", progress=False, logger=RunLogger()).run()
    cfg = override(config(), **{"train.bookkeeping.log_every": 1})
    Trainer(cfg, tmp_path / "run", progress=False, logger=RunLogger()).run(resume=True)
    assert [r["step"] for r in strict_rows(tmp_path / "run")] == [2, 3, 4, 5, 6]


def test_a_resume_takes_its_config_from_the_checkpoint_it_continues(tmp_path, capsys):
    """A newest checkpoint whose config.json was damaged (here: edited to another width) is passed over, and the
    network is built from the config of the checkpoint the run continues from, not from the damaged one."""
    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), *TINY_FLAGS, "--train-steps", "4", "--checkpoint-every", "2"])
    newest = list_checkpoints(run)[-1] / "config.json"
    edited = json.loads(newest.read_text())
    edited["model"]["channels"] = 32
    newest.write_text(json.dumps(edited))
    capsys.readouterr()
    main(["train", "--run-dir", str(run), "--resume", "--train-steps", "6"])
    err = capsys.readouterr().err
    assert "step-0000004/config.json" in err and "resuming from the checkpoint before it" in err
    assert [p.name for p in list_checkpoints(run)][-1] == "step-0000006"
    assert json.loads((list_checkpoints(run)[-1] / "config.json").read_text())["model"]["channels"] == 16


def test_a_resume_measures_its_train_steps_against_the_checkpoint_it_continues(tmp_path, capsys):
    """With the newest checkpoint (step 4) damaged, the run continues from step 2, so --train-steps 3 is a valid
    end; it was refused as ending before step 4, the damaged checkpoint's step."""
    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), *TINY_FLAGS, "--train-steps", "4", "--checkpoint-every", "2"])
    weights = list_checkpoints(run)[-1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # cut short, as by a full disk
    capsys.readouterr()
    main(["train", "--run-dir", str(run), "--resume", "--train-steps", "3"])
    assert "resuming from the checkpoint before it" in capsys.readouterr().err
    # The damaged step 4 is set aside (not counted among the two newest kept, not deleted).
    assert [p.name for p in list_checkpoints(run)] == ["step-0000002", "step-0000003"]
    assert (run / "checkpoints" / "damaged-step-0000004" / "model.safetensors").is_file()
    expect_error(capsys, "train", "--run-dir", run, "--resume", "--train-steps", "2",
                 match="is at step 3: --train-steps 2 ends before it (give 3 or more")


def test_sampling_refuses_weights_that_differ_from_what_was_written(tmp_path, capsys):
    """sample, eval and show read a checkpoint's config and weights only after checking them against its
    manifest: one flipped bit is one line, not samples from silently altered weights."""
    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), *TINY_FLAGS, "--train-steps", "2"])
    ema = list_checkpoints(run)[-1] / "ema.safetensors"
    data = ema.read_bytes()
    ema.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    assert "contents differ from what was written" in cli_error(capsys, "sample", run, "--n", "2", "--steps", "2",
                                                                "--out", tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()
    # A file of another size says which way it went: cut short, or grown by an edit (not "truncated").
    config = list_checkpoints(run)[-1] / "config.json"
    text = config.read_text()
    config.write_text(text + "\n")
    assert f"{len(text) + 1} bytes, {len(text)} written (changed since it was saved)" in cli_error(
        capsys, "sample", run, "--n", "2", "--steps", "2", "--out", tmp_path / "s.npz")
    config.write_text(text[:-5])
    assert "written (cut short since it was saved)" in cli_error(capsys, "sample", run, "--n", "2", "--steps", "2",
                                                                  "--out", tmp_path / "s.npz")


def test_a_first_signal_waits_for_the_step_and_a_second_interrupts_at_once():
    """The first SIGINT is noted, so that the loop checkpoints at the end of the step; a second one (a hung step,
    or a user who will not wait) raises KeyboardInterrupt there and then; the old handlers come back after."""
    from gaussdiff.training.control import StopSignals

    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
