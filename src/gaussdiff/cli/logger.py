"""The run logger the CLI hands a trainer: metrics.jsonl, sample grids and the loss plot in the run directory."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from torch import Tensor

from ..training.files import atomic_write
from ..viz import plot_loss, read_metrics, save_grid


class RunLogger:
    """``metrics.jsonl`` (one JSON row per log), ``PICTURE/step-*.png`` and ``PICTURE.png`` (the newest;
    ``samples`` unless told otherwise), and ``loss.png``, redrawn with every preview and at the end."""

    def __init__(self, picture: str = "samples") -> None:
        self.picture = picture
        self.run_dir: Path | None = None
        self._metrics: IO[str] | None = None

    @property
    def metrics_path(self) -> Path:
        assert self.run_dir is not None, "start() first"
        return self.run_dir / "metrics.jsonl"

    def start(self, run_dir: Path, step: int) -> None:
        self.run_dir = run_dir
        # A resumed run repeats the steps after its checkpoint: drop the rows logged for them.
        kept = [r for r in read_metrics(self.metrics_path) if r.get("step", 0) <= step] if step > 0 else []
        atomic_write(self.metrics_path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept)))
        self._metrics = open(self.metrics_path, "a")

    def log(self, row: dict[str, Any]) -> None:
        assert self._metrics is not None, "start() first"
        # Strict JSON: a non-finite number (which json.dumps would write as a bare NaN) becomes null.
        row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        self._metrics.write(json.dumps(row, allow_nan=False) + "\n")
        self._metrics.flush()

    def images(self, step: int, images: Tensor, per_row: int | None, row_labels: Sequence[str] = (),
               caption: str = "") -> None:
        assert self.run_dir is not None, "start() first"
        for path in (self.run_dir / self.picture / f"step-{step:07d}.png", self.run_dir / f"{self.picture}.png"):
            save_grid(images, path, nrow=per_row, row_labels=row_labels, caption=caption)
        plot_loss(self.metrics_path, self.run_dir / "loss.png")

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
            plot_loss(self.metrics_path, self.run_dir / "loss.png")
