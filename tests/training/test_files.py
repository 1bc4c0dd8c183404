"""atomic_write and remove: what is left on disk after a write that replaces, a write that fails, a link; and
where the caches live."""

import os
from pathlib import Path

import pytest

from gaussdiff.errors import WriteError
from gaussdiff.training.files import atomic_write, remove, user_cache_dir


def test_a_directory_written_over_an_old_one_replaces_it_whole(tmp_path):
    """os.replace cannot put a directory over a non-empty one: the old is removed first, and none of its files
    survive into the new."""
    target = tmp_path / "step"

    def write(files):
        return lambda tmp: (tmp.mkdir(), *[(tmp / name).write_text(name) for name in files])

    atomic_write(target, write(["a", "b"]))
    atomic_write(target, write(["c"]))
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["step"]  # no temporary left beside it


def test_a_file_is_not_written_over_a_directory_of_its_name(tmp_path):
    """Only a directory replaces a directory (a checkpoint written again): a file whose name a user's directory
    holds is one line, and the directory keeps what it held."""
    target = tmp_path / "timesteps.json"
    target.mkdir()
    (target / "mine").write_text("kept")
    with pytest.raises(WriteError, match="cannot write .*timesteps.json"):
        atomic_write(target, lambda tmp: tmp.write_text("{}"))
    assert (target / "mine").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["timesteps.json"]  # no temporary left beside it


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="cannot write .*config.json: No space left on device"):
        atomic_write(target, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"] and target.read_text() == "old"


def test_removing_a_link_to_a_directory_removes_the_link_not_what_it_points_to(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "file").write_text("x")
    link = tmp_path / "link"
    os.symlink(kept, link)
    remove(link)
    assert not os.path.lexists(link) and (kept / "file").read_text() == "x"
    remove(tmp_path / "absent")  # nothing there: nothing to do


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
