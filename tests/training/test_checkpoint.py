"""Checkpoint files without a trainer: the order of steps, leftovers of a killed save, which files a reader
verifies, the loaders' one-line refusals."""

import json
from pathlib import Path

import pytest
import torch

from gaussdiff.errors import CheckpointError
from gaussdiff.training.checkpoint import (
    list_checkpoints,
    newest_intact,
    load_checkpoint_config,
    load_state_dict_strict,
    read_tuned_steps,
    resolve_checkpoint,
    resumed_run_config,
    save_checkpoint,
    save_tuned_steps,
    verify_checkpoint,
)
from gaussdiff.training.config import RunConfig


def save(run: Path, step: int, keep: int = 0, config=None) -> Path:
    weights = {"model": {"w": torch.full((3,), float(step))}, "ema": {"w": torch.zeros(3)}}
    return save_checkpoint(run, step, config or RunConfig(), weights, {"step": step}, keep)


def test_checkpoints_are_ordered_by_step_number_past_seven_digits(tmp_path):
    """step-10000000 comes after step-9999999 (as a number, not as a name: "1" < "9"); the newest kept and
    resolved is the highest step."""
    for step in (20, 9_999_999, 10_000_000):
        save(tmp_path, step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000020", "step-9999999", "step-10000000"]
    assert resolve_checkpoint(tmp_path).name == "step-10000000"
    save(tmp_path, 10_000_001, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-10000000", "step-10000001"]


def test_a_checkpoint_newer_than_the_save_is_set_aside_and_never_outlives_the_save(tmp_path):
    """A checkpoint at or past the step being saved is one a resume passed over as damaged. Left in line with
    keep=1 it was the one kept, and the checkpoint just written was deleted (at the same step, it was deleted to
    make way); now it is moved aside, twice if need be, and the new checkpoint is kept."""
    for step in (2, 4):
        save(tmp_path, step)
    save(tmp_path, 3, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000003"]
    assert torch.load(tmp_path / "checkpoints" / "damaged-step-0000004" / "training.pt") == {"step": 4}
    save(tmp_path, 4)
    save(tmp_path, 4, keep=1)  # the same step: the one there is set aside, without overwriting the first
    aside = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("damaged-"))
    assert aside == ["damaged-step-0000004", "damaged-step-0000004-again"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000004"]


def test_a_killed_saves_temporaries_are_removed_by_the_next_save(tmp_path):
    """A save or a deletion killed midway leaves .tmp-step-* directories; they are not checkpoints, and the
    next save clears them (one process writes a run's checkpoints)."""
    save(tmp_path, 1)
    root = tmp_path / "checkpoints"
    for name in (".tmp-step-0000002-4242", ".tmp-step-0000001-old"):
        (root / name).mkdir()
        (root / name / "model.safetensors").write_bytes(b"half")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000001"]
    save(tmp_path, 3)
    assert sorted(p.name for p in root.iterdir()) == ["step-0000001", "step-0000003"]


def test_a_reader_verifies_only_the_files_it_takes(tmp_path):
    """The config's reader hashes config.json alone: damaged weights do not hide a resume's config (the trainer
    verifies the whole checkpoint it loads); the whole check names the damage, cut short or changed."""
    config = RunConfig()
    save(tmp_path, 1, config=config)
    newest = save(tmp_path, 2, config=config)
    weights = newest / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1])
    verify_checkpoint(newest, ("config.json",))
    assert resumed_run_config(tmp_path) == config
    with pytest.raises(CheckpointError, match="cut short"):
        verify_checkpoint(newest)
    weights.write_bytes(data + b"!")
    with pytest.raises(CheckpointError, match="changed since"):
        verify_checkpoint(newest)


def test_a_changed_byte_of_the_same_size_is_caught_by_the_hash_and_a_resume_takes_the_older_checkpoint(tmp_path):
    """The manifest's sha256 catches what its byte count cannot: one byte of the newest weights changed in place
    (same size, as a flipped bit). verify_checkpoint names it, and newest_intact falls back to the step before,
    whose files still hash as written."""
    older = save(tmp_path, 1)
    newest = save(tmp_path, 2)
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert weights.stat().st_size == len(data)
    with pytest.raises(CheckpointError, match="contents differ"):
        verify_checkpoint(newest)
    verify_checkpoint(newest, ("config.json",))  # the other files are intact
    assert newest_intact(tmp_path) == older


def test_a_weight_of_another_shape_is_one_line(tmp_path):
    module = torch.nn.Linear(3, 2)
    state = {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"weight weight has shape \(2, 4\), the model expects \(2, 3\)"):
        load_state_dict_strict(module, state, tmp_path)


def test_a_tuning_replaces_a_damaged_tuned_steps_file(tmp_path):
    (tmp_path / "timesteps.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        read_tuned_steps(tmp_path)
    save_tuned_steps(tmp_path, "ddim@8", {"timesteps": [1, 2]})
    assert read_tuned_steps(tmp_path) == {"ddim@8": {"timesteps": [1, 2]}}


def test_a_saved_config_with_no_image_size_is_refused(tmp_path):
    """A hand-edited config.json is checked for ranges, not only types: image_size 0 is one line."""
    checkpoint = save(tmp_path, 1)
    path = checkpoint / "config.json"
    raw = json.loads(path.read_text())
    raw["model"]["image_size"] = 0
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="--image-size must be at least 1, not 0"):
        load_checkpoint_config(checkpoint)
