"""kill -9 a training run at random moments, resume it each time, and count what was lost.

    python bench/faults.py --kills 20            # the table in docs/distributed.md
    python bench/faults.py --kills 20 --nproc 2  # the same under torchrun, 2 gloo ranks (kills one worker)

A reference run trains uninterrupted. The faulted run is started, killed with SIGKILL after a random
delay (one in five during start-up, the others once training runs: mid-step, or while a checkpoint is
being written, which is every other step so that many kills land in one), checked, and started again with
--resume, ``--kills``
times, then let finish. After every kill each checkpoint on disk is verified (its manifest's sizes
and hashes, and its weights and training state read back), and the steps done since the last
checkpoint are counted as lost (they are computed again after the resume). At the end the faulted
run's logged losses must equal the reference's, step for step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gaussdiff.errors import CheckpointError
from gaussdiff.training.checkpoint import list_checkpoints, load_training_state, load_weights, verify_checkpoint

FLAGS = ["--channels", "32", "--channel-mult", "1", "2", "--num-res-blocks", "1", "--attention-resolutions", "4",
         "--diffusion-steps", "50", "--batch-size", "16", "--log-every", "1", "--checkpoint-every", "2",
         "--keep-checkpoints", "3", "--sample-every", "100000", "--preview-steps", "5", "--device", "cpu",
         "--precision", "fp32"]


def command(run: Path, steps: int, nproc: int, resume: bool) -> list[str]:
    launcher = [sys.executable, "-m", "gaussdiff"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                    "-m", "gaussdiff"]
    return [*launcher, "train", "--run-dir", str(run), *FLAGS, "--train-steps", str(steps),
            *(["--resume"] if resume else [])]


def logged(run: Path) -> dict[int, float]:
    """Step -> loss of metrics.jsonl (a line cut short by the kill is not a row)."""
    rows = {}
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        rows[row["step"]] = row["loss"]
    return rows


def corrupt_checkpoints(run: Path) -> int:
    bad = 0
    for checkpoint in list_checkpoints(run):
        try:
            verify_checkpoint(checkpoint)
            load_weights(checkpoint, "model"), load_weights(checkpoint, "ema"), load_training_state(checkpoint)
        except CheckpointError as e:
            print(f"  corrupt: {e}", file=sys.stderr)
            bad += 1
    return bad


def kill(proc: subprocess.Popen, nproc: int) -> None:
    """SIGKILL the trainer; under torchrun, one worker (the agent then stops the job: a lost node)."""
    if nproc > 1:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if children:
            os.kill(int(random.choice(children)), signal.SIGKILL)
            proc.wait()
            return
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def run_faults(workdir: Path, kills: int, steps: int, nproc: int, seed: int, delay: tuple[float, float]) -> dict:
    random.seed(seed)
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(command(workdir / "reference", steps, nproc, False), check=True, **quiet)
    reference = logged(workdir / "reference")
    run = workdir / "faulted"
    resumes = lost = worst = corrupt = 0
    for _ in range(kills):
        resume = bool(list_checkpoints(run))
        resumes += resume
        start = max(logged(run), default=0) if resume else 0
        proc = subprocess.Popen(command(run, steps, nproc, resume), **quiet)
        if random.random() < 0.2:  # during start-up (reading the checkpoint, building the model)
            time.sleep(random.uniform(0.0, 2.0))
        else:  # once training runs: mid-step, or while a checkpoint is written
            while proc.poll() is None and max(logged(run), default=0) <= start:
                time.sleep(0.01)
            time.sleep(random.uniform(*delay))
        kill(proc, nproc)
        if proc.returncode == 0:  # it finished first: start over so that every kill lands
            print("  the run finished before the kill; raise --steps", file=sys.stderr)
        done = max(logged(run), default=0)
        found = list_checkpoints(run)
        saved = int(found[-1].name.split("-")[1]) if found else 0
        lost += max(0, done - saved)
        worst = max(worst, done - saved)
        corrupt += corrupt_checkpoints(run)
    subprocess.run(command(run, steps, nproc, bool(list_checkpoints(run))), check=True, **quiet)
    faulted = logged(run)
    diff = max((abs(faulted[k] - reference[k]) for k in reference if k in faulted), default=float("nan"))
    leftovers = len(list((run / "checkpoints").glob(".tmp-*")))
    return {"kills": kills, "resumes": resumes, "steps": steps, "processes": nproc, "steps_lost": lost,
            "most_lost_at_once": worst, "corrupt_checkpoints": corrupt, "leftover_temporaries": leftovers,
            "rows_equal_reference": faulted.keys() == reference.keys(), "max_loss_difference": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--steps", type=int, default=600, help="steps of the run (it must outlast the kills)")
    p.add_argument("--nproc", type=int, default=1, help="processes under torchrun (1: no torchrun)")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    p.add_argument("--delay", type=float, nargs=2, default=(0.0, 1.0),
                   help="most kills come U(lo, hi) s after the first step a start logs (1 in 5 during start-up)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = run_faults(Path(tmp), a.kills, a.steps, a.nproc, a.seed, tuple(a.delay))
    if a.json:
        print(json.dumps(r))
        return
    print(f"kill -9 at random moments ({r['processes']} process(es), {r['steps']} steps, checkpoint every 2; "
          f"seed {a.seed})")
    print("| kills | resumes | steps lost (total / most at once) | corrupt checkpoints | leftover temporaries | "
          "losses equal the uninterrupted run's |")
    print("|---|---|---|---|---|---|")
    same = "yes" if r["rows_equal_reference"] and r["max_loss_difference"] == 0 else \
        f"no (max |diff| {r['max_loss_difference']:.2g})"
    print(f"| {r['kills']} | {r['resumes']} | {r['steps_lost']} / {r['most_lost_at_once']} | "
          f"{r['corrupt_checkpoints']} | {r['leftover_temporaries']} | {same} |")


if __name__ == "__main__":
    main()
