"""The one atomic-write helper: every file gaussdiff keeps (checkpoints, configs, caches) goes through it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` (a file or a directory) through ``write(tmp)``, then rename it into place.

    A reader, or a run resumed after a kill at any moment, sees the old ``path`` or the new one,
    never a half-written one: the data reaches the disk (fsync) before the rename does. The
    temporary name starts with ``.tmp-``, which no reader takes for the real thing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    for f in [*tmp.iterdir(), tmp] if tmp.is_dir() else [tmp]:
        _fsync(f)
    if path.is_dir():
        shutil.rmtree(path)  # os.replace cannot replace a non-empty directory
    os.replace(tmp, path)
    _fsync(path.parent)
    return path
