"""load_trained and Trained: what a library user hands them."""

from pathlib import Path

from gaussdiff.training.run import load_trained

RUN = Path(__file__).resolve().parent.parent / "fixtures" / "run-v0.1"


def test_a_run_directory_loads_from_a_string_as_from_a_path():
    """A path typed as a string (it raised AttributeError: 'str' object has no attribute 'is_dir')."""
    assert load_trained(str(RUN)).checkpoint == load_trained(RUN).checkpoint


def test_images_other_than_the_runs_uint8_are_refused_not_measured():
    """Float images in [-1, 1] were scaled again as if uint8, and images of another size went through the
    convolutional network: both measured silently (a bits/dim of the wrong thing)."""
    import pytest
    import torch

    trained = load_trained(RUN)  # uint8 [N, 1, 8, 8]
    assert trained.x0_of(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape == (2, 1, 8, 8)
    for images in (torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 16, 16, dtype=torch.uint8),
                   torch.zeros(1, 8, 8, dtype=torch.uint8)):
        with pytest.raises(ValueError, match=r"images must be uint8 \[N, 1, 8, 8\] \(this run's\), got"):
            trained.x0_of(images)
