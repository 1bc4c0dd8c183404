"""Where gaussdiff keeps its caches (training/files.py)."""

from pathlib import Path

import pytest

from gaussdiff.training.files import user_cache_dir


@pytest.mark.parametrize("value, expected", [
    ("/srv/caches", Path("/srv/caches/gaussdiff")),
    # Unset, empty or relative: the XDG Base Directory specification's default, ~/.cache.
    (None, Path.home() / ".cache" / "gaussdiff"),
    ("", Path.home() / ".cache" / "gaussdiff"),
    ("relative/caches", Path.home() / ".cache" / "gaussdiff"),
])
def test_user_cache_dir_follows_xdg(monkeypatch, value, expected):
    """A user who moved their caches with $XDG_CACHE_HOME finds gaussdiff's there too, as pip's and torch.hub's;
    a value the specification calls invalid (relative) is ignored rather than taken relative to the working
    directory, where each run would keep another cache."""
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert user_cache_dir() == expected
