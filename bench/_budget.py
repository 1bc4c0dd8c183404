"""Train a run for as many steps as a wall-clock budget allows (the step time from a 10-step pilot)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from gaussdiff.training import RunConfig, Trainer


def train_within(config_for: Callable[[int], RunConfig], budget: float, run: Path) -> tuple[Path, int, float, float]:
    """Train ``config_for(steps)`` in ``run``, ``steps`` fitted to ``budget`` seconds; the run, its steps,
    seconds and training images per second."""
    pilot = Trainer(config_for(10), run.with_name(run.name + "-pilot"), progress=False)
    pilot.train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(10):
        pilot.train_step()
    steps = max(10, int(budget / ((time.perf_counter() - start) / 10)))
    trainer = Trainer(config_for(steps), run, progress=False)
    start = time.perf_counter()
    trainer.run()
    elapsed = time.perf_counter() - start
    return run, steps, elapsed, steps * trainer.config.train.batch_size / elapsed
