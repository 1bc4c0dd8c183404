"""Checks of options that several subcommands share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import UsageError
from ..training.run import Trained


def check_steps(steps: int | None, trained: Trained) -> None:
    """``--steps`` must be a respacing of the run's schedule."""
    if steps is not None and not 1 <= steps <= trained.diffusion.num_steps:
        raise UsageError(f"--steps must lie in 1..{trained.diffusion.num_steps}")


def parse_class(value: str | None, num_classes: int | None, n: int) -> tuple[torch.Tensor | None, int | None]:
    """``--class K`` or ``--class all`` -> labels [n] (and the grid's row length for ``all``)."""
    if value is None:
        return None, None
    if num_classes is None:
        raise UsageError("--class needs a run trained on labelled data")
    if value == "all":
        per_class = -(-n // num_classes)
        return torch.arange(num_classes).repeat_interleave(per_class), per_class
    if not value.isdigit() or not 0 <= int(value) < num_classes:
        raise UsageError(f"--class must be 'all' or a class in 0..{num_classes - 1}, not {value!r}")
    return torch.full((n,), int(value)), None


def read_prompts(prompts: Sequence[str], prompt_file: Path | None) -> list[str]:
    """``--prompt`` and the lines of ``--prompt-file`` (blank lines skipped), in that order."""
    out = list(prompts)
    if prompt_file is not None:
        try:
            lines = prompt_file.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not a word
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--prompt-file {prompt_file}: cannot read it ({type(e).__name__})") from None
        out += [line.strip() for line in lines if line.strip()]
        if not any(line.strip() for line in lines):
            raise UsageError(f"--prompt-file {prompt_file}: no prompts in it (one per line)")
    return out
