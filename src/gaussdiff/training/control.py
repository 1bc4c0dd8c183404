"""What every trainer shares around its steps: the :class:`Logger` it is handed, stopping on SIGTERM or SIGINT
with a checkpoint (:class:`StopSignals`, :class:`Stopped`), the end-of-step order of checkpoint, preview and
stop, and resuming from the newest checkpoint that reads back (:func:`resume_checkpoint`). The diffusion trainer
and the autoencoder's run their loops through these; a preempted job of either loses no step."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import CheckpointError
from .checkpoint import list_checkpoints
from .config import Bookkeeping
from .distributed import Distributed


class Logger(Protocol):
    """Where a run's figures and pictures go; the CLI's writes metrics.jsonl, sample grids and loss.png."""

    def start(self, run_dir: Path, step: int) -> None:
        """A run in ``run_dir`` starts (or resumes) at ``step``."""

    def log(self, row: dict[str, Any]) -> None:
        """One row of metrics: ``step`` (steps done), ``lr`` (the rate of the next step), ``images_per_s`` and each
        trainer's own figures, means over the steps since the last row (the diffusion trainer's ``loss``,
        ``loss_by_t``, ``grad_norm`` of the last step, ``skipped``; the autoencoder's ``rec``, ``kl``, ``loss``...)."""

    def images(self, step: int, images: Tensor, per_row: int | None, row_labels: Sequence[str] = (),
               caption: str = "") -> None:
        """The preview grid at ``step``: ``uint8 [N, C, H, W]``, ``per_row`` a row (None: square), with
        ``row_labels`` to write beside the rows (prompts) and ``caption`` (how they were drawn) under them."""

    def close(self) -> None:
        """The run stopped (finished, or interrupted)."""


class NullLogger:
    """Keeps nothing: for benchmarks and tests that look only at the losses."""

    def start(self, run_dir: Path, step: int) -> None:
        pass

    def log(self, row: dict[str, Any]) -> None:
        pass

    def images(self, step: int, images: Tensor, per_row: int | None, row_labels: Sequence[str] = (),
               caption: str = "") -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    losses: list[float]


class Stopped(Exception):
    """The run stopped on a signal (SIGTERM from a scheduler preempting it, or SIGINT) after writing a
    checkpoint at the current step: resuming loses nothing."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class StopSignals:
    """SIGTERM (a scheduler preempting the job) and SIGINT (Ctrl-C), held while a training loop runs, so that it
    stops at the end of the current step with a checkpoint (:meth:`stop_if_caught`) instead of losing the steps since
    the last one. Outside the main thread, signals stay with whoever runs the loop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._handlers: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._handlers[signum] = signal.signal(signum, self._caught)
        except ValueError:  # not the main thread
            self._handlers = {}
        return self

    def _caught(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second one: the step hangs, or the user will not wait for it
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)

    def stop_if_caught(self, dist: Distributed, step: int, run_dir: Path, save: Callable[[], Path],
                       saved: bool) -> None:
        """At the end of a step: if a signal came to any rank, every rank checkpoints (``save``, unless this step
        was just ``saved``) and raises :class:`Stopped`, naming the newest checkpoint."""
        if not dist.any(self.signum is not None):
            return
        signum = dist.broadcast(self.signum if self.signum is not None else signal.SIGTERM)
        checkpoint = save() if not saved else None
        found = list_checkpoints(run_dir)
        raise Stopped(signum, step, found[-1] if found else checkpoint)


def end_of_step(b: Bookkeeping, step: int, last: int, dist: Distributed, signals: StopSignals, run_dir: Path,
                save: Callable[[], Path], preview: Callable[[], None]) -> None:
    """What every trainer does after step ``step`` of ``last``, in this order: ``save`` a checkpoint when due, a
    ``preview`` when due (rank 0 draws it, the others wait), then, if a signal came, stop with a checkpoint
    (:meth:`StopSignals.stop_if_caught`; the one just saved serves)."""
    saved = b.due(b.checkpoint_every, step, last)
    if saved:
        save()
    if b.due(b.sample_every, step, last):
        if dist.is_main:
            preview()
        dist.barrier()
    signals.stop_if_caught(dist, step, run_dir, save, saved)


def warn(message: str) -> None:
    print(f"gaussdiff: warning: {message}", file=sys.stderr)


def restore_generator(generator: torch.Generator, state: Tensor, reseed: int, what: str) -> None:
    """Set ``generator`` (one on the run's device) to its saved ``state``. A state saved on another kind of device
    (--device may change on --resume: CUDA's generator keeps 16 bytes, the CPU's 5056) cannot continue here, and the
    run would otherwise refuse every checkpoint: ``generator`` is seeded with ``reseed`` instead, with a warning
    (``what`` names the generator)."""
    if state.numel() != generator.get_state().numel():
        generator.manual_seed(reseed)
        warn(f"{what} was saved on another kind of device: it cannot continue here and starts from a new seed")
        return
    generator.set_state(state)


def resume_checkpoint(run_dir: Path, load: Callable[[Path], None]) -> Path:
    """Resume from the newest checkpoint of ``run_dir`` that ``load`` (a trainer's) accepts: a truncated or
    corrupt newest one (a full disk, a broken copy) is reported in one line and the one before is used."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoint)")
    for i, checkpoint in enumerate(reversed(found)):
        try:
            load(checkpoint)
            return checkpoint
        except CheckpointError as e:
            if i == len(found) - 1:
                raise CheckpointError(f"{run_dir}: no readable checkpoint to resume (the oldest: {e})") from None
            warn(f"{e}; resuming from the checkpoint before it ({checkpoint.name} is set aside as "
                 f"damaged-{checkpoint.name} at the next save)")
    raise AssertionError("unreachable")
