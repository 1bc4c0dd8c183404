"""The one atomic-write helper: every file gaussdiff keeps (checkpoints, configs, caches) goes through it;
and where the caches live."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from ..errors import WriteError


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
    temporary name starts with ``.tmp-``, which no reader takes for the real thing. A write that
    fails (a full disk, no permission) removes its temporary and raises :class:`WriteError`, one line.
    """
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove(tmp)
        write(tmp)
        for f in [*tmp.iterdir(), tmp] if tmp.is_dir() else [tmp]:
            _fsync(f)
        if path.is_dir() and tmp.is_dir():  # a directory over a file, or a file over a directory, is refused
            shutil.rmtree(path)  # os.replace cannot replace a non-empty directory
        os.replace(tmp, path)
        _fsync(path.parent)
    except (OSError, SafetensorError, RuntimeError) as e:
        # torch.save reports a full disk as a RuntimeError from its zip writer.
        remove(tmp)
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise WriteError(f"cannot write {path}: {reason}") from None
    return path


def user_cache_dir() -> Path:
    """Where gaussdiff keeps what it can rebuild (FID features, domain classifiers, ``--conv auto``'s verdicts).

    ``$XDG_CACHE_HOME/gaussdiff``, or ``~/.cache/gaussdiff`` where that is unset, empty or relative: the XDG
    Base Directory specification, which pip, torch.hub and Hugging Face follow too, so that a user who moves
    their caches moves gaussdiff's with them.
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The specification asks that a relative path be ignored as invalid.
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "gaussdiff"


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it is there (best effort: it may be what could not be written)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass
