"""``--conv auto``'s verdicts kept per machine, so that a new run measures only what no earlier run here has.

Whether Winograd beats the direct convolution depends on the CPU, the thread count and PyTorch's own
kernels (docs/speed.md: 1.2-1.8x faster on a Zen 1, slower on a Zen 5 and on an Intel Xeon with AMX), not
on the run: the verdict for one layer and input configuration (:meth:`Conv3x3.config_key`) holds for every
network on the same machine, as cuDNN's benchmark cache does for its algorithms. Measuring costs about 10 s
of a CIFAR-sized network's first step on 2 cores; with the table kept here, only the first run on a machine
pays it.

A table is one JSON file per machine under ``cache_dir``, named by a hash of :func:`machine_key` (CPU model,
family and flags, torch version, threads) and holding that key beside the verdicts, so that a changed
machine, an upgraded torch or another thread count measures afresh. Deleting the directory measures afresh
too. A file that cannot be read is measured over and replaced, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch

from ..nets.fast import cpu_info
from .files import atomic_write, user_cache_dir

DEFAULT_CONV_CACHE = user_cache_dir() / "conv"


def machine_key() -> dict[str, object]:
    """What the verdicts depend on besides the layer: the CPU (model, family and a hash of its feature flags),
    torch's version (its kernels) and the threads it computes with."""
    cpu = cpu_info()
    flags = hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:16]
    return {"cpu": cpu.model, "family": cpu.family, "flags": flags, "arch": platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def table_path(cache_dir: Path, machine: dict[str, object]) -> Path:
    """The file of ``machine``'s table: named by a hash of its key, which the file holds too."""
    digest = hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{digest}.json"


def load_verdicts(cache_dir: Path, machine: dict[str, object] | None = None) -> dict[str, bool]:
    """The verdicts kept for this machine (``machine``: :func:`machine_key`'s), or none when there is no table,
    it was written for another machine, or it is not a table of verdicts."""
    machine = machine_key() if machine is None else machine
    try:
        found = json.loads(table_path(cache_dir, machine).read_text())
    except (OSError, ValueError):
        return {}
    verdicts = found.get("verdicts") if isinstance(found, dict) and found.get("machine") == machine else None
    if not isinstance(verdicts, dict) or not all(isinstance(k, str) and isinstance(v, bool)
                                                 for k, v in verdicts.items()):
        return {}
    return verdicts


def keep_verdicts(cache_dir: Path, verdicts: dict[str, bool], machine: dict[str, object] | None = None) -> Path:
    """Add ``verdicts`` to this machine's table (atomically: read, merged, replaced; ours replace theirs for a
    configuration both measured, and a run writing at the same moment may lose its new verdicts, which costs only
    measuring them again). Returns the table's path; a write that fails raises :class:`~gaussdiff.errors.WriteError`."""
    machine = machine_key() if machine is None else machine
    merged = {**load_verdicts(cache_dir, machine), **verdicts}
    path = table_path(cache_dir, machine)
    text = json.dumps({"machine": machine, "verdicts": dict(sorted(merged.items()))}, indent=1)
    return atomic_write(path, lambda tmp: tmp.write_text(text))
