"""load_trained and Trained: what a library user hands them."""

from pathlib import Path

from gaussdiff.training.run import load_trained

RUN = Path(__file__).resolve().parent.parent / "fixtures" / "run-v0.1"


def test_a_run_directory_loads_from_a_string_as_from_a_path():
    """A path typed as a string (it raised AttributeError: 'str' object has no attribute 'is_dir')."""
    assert load_trained(str(RUN)).checkpoint == load_trained(RUN).checkpoint
