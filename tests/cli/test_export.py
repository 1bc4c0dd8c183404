"""`gaussdiff export`'s refusals before it reads the run (the export itself: tests/training/test_interop.py)."""

from conftest import expect_error


def test_a_file_where_the_folder_would_go_is_refused_and_kept(tmp_path, capsys):
    """--diffusers names a folder to create or an empty one: a file there is refused in one line, before the
    checkpoint is even looked for, and left as it was."""
    target = tmp_path / "pipeline"
    target.write_text("mine")
    expect_error(capsys, "export", tmp_path / "no-run", "--diffusers", target,
                 match="exists and is not an empty folder")
    assert target.read_text() == "mine"
