"""Checkpoints: weights in safetensors, the rest in plain tensors and JSON, written atomically.

A checkpoint is a directory ``checkpoints/step-0001000/`` holding a ``NAME.safetensors`` for each set of
weights (a diffusion run's ``model`` and ``ema``; an autoencoder's ``model``, and ``discriminator`` with a
GAN), ``training.pt`` (the step, optimizer, scheduler, scaler and RNG states and the loop's counters: plain
values only, tensors, numbers, strings and lists, read back with ``torch.load(weights_only=True)``) and
``config.json``. It is written under a temporary name and renamed into place, so a kill at any moment leaves
either the old set of checkpoints or the new one, never a half-written directory that could be resumed. A
``manifest.json`` written last gives each file's size and SHA-256, so a checkpoint damaged later (a
broken copy, a disk that filled up while it was copied) is found before it is resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ConfigError
from .config import RunConfig, at_least, load_config, save_config
from .files import atomic_write, remove

PREFIX = "step-"
MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def verify_checkpoint(checkpoint: Path, only: tuple[str, ...] | None = None) -> None:
    """Every file of ``checkpoint`` (or ``only`` those of them a reader takes) has the size and hash its manifest
    gives (checkpoints written before manifests existed pass; reading them finds what damage it can)."""
    path = checkpoint / MANIFEST
    if not path.exists():
        return
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"{path}: unreadable manifest") from None
    entries_ok = isinstance(manifest, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
        and Path(name).name == name for name, entry in manifest.items())
    if not entries_ok:  # a file name each, with {"bytes": int, "sha256": str}, as write_manifest writes it
        raise CheckpointError(f"{path}: malformed manifest (not what gaussdiff writes)")
    for name, entry in manifest.items():
        if only is not None and name not in only:
            continue
        f = checkpoint / name
        if not f.is_file():
            raise CheckpointError(f"{checkpoint}: {name} is missing")
        if f.stat().st_size != entry["bytes"]:
            size = f.stat().st_size
            why = "cut short" if size < entry["bytes"] else "changed"
            raise CheckpointError(f"{f}: {size} bytes, {entry['bytes']} written ({why} since it was saved)")
        if sha256_of(f) != entry["sha256"]:
            raise CheckpointError(f"{f}: contents differ from what was written (corrupt, or edited since)")


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """A state dict as safetensors (plain, contiguous CPU tensors)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path)


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: Any,
    weights: dict[str, dict[str, torch.Tensor]],
    training: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically (``NAME.safetensors`` for each of ``weights``, e.g. model and
    ema) and keep only the newest ``keep`` checkpoints."""

    def write(tmp: Path) -> None:
        tmp.mkdir()
        for name, state in weights.items():
            save_weights(state, tmp / f"{name}.safetensors")
        torch.save(training, tmp / "training.pt")
        save_config(config, tmp / "config.json")
        write_manifest(tmp)

    # A run killed while writing (kill -9, a lost node) left its temporary behind; one process writes a run's
    # checkpoints, so any temporary here is such a leftover.
    for stale in (run_dir / "checkpoints").glob(f".tmp-{PREFIX}*"):
        remove(stale)
    # A checkpoint at this step or newer is one the resume passed over as damaged (it continues from the newest it
    # can read). Set aside, not deleted: left in line it would count among the newest ``keep`` and could have the
    # checkpoint written here pruned in its favour; at this very step it would be deleted to make way.
    for newer in [p for p in list_checkpoints(run_dir) if step_of(p) >= step]:
        aside = newer.with_name(f"damaged-{newer.name}")
        while aside.exists():
            aside = aside.with_name(aside.name + "-again")
        os.replace(newer, aside)
    final = atomic_write(run_dir / "checkpoints" / f"{PREFIX}{step:07d}", write)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        # Renamed first (atomic), then deleted: a kill in the middle of deleting leaves a temporary, which the
        # next save removes, never a half-deleted step-N that a resume would take for a checkpoint.
        doomed = old.with_name(f".tmp-{old.name}-old")
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def step_of(checkpoint: Path) -> int:
    """The step of a checkpoint directory, from its name (``step-0001000``: 1000)."""
    return int(checkpoint.name[len(PREFIX):])


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are not checkpoints)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=step_of)


def newest_intact(run_dir: Path, only: tuple[str, ...] | None = None) -> Path:
    """The newest checkpoint of a run whose files (or ``only`` those a reader takes) are as written
    (:func:`verify_checkpoint`); a :class:`CheckpointError` if there is none."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoint)")
    for checkpoint in reversed(found):
        try:
            verify_checkpoint(checkpoint, only)
            return checkpoint
        except CheckpointError as e:
            last = e
    raise CheckpointError(f"{run_dir}: no readable checkpoint to resume (the oldest: {last})")


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is one checkpoint's directory (it holds the model's weights), not a run's."""
    return (path / "model.safetensors").exists()


def resolve_checkpoint(path: Path) -> Path:
    """A run directory (its newest checkpoint) or a checkpoint directory -> the checkpoint directory."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such run or checkpoint")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a file, not a run or checkpoint directory")
    if is_checkpoint(path):
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"{path}: no checkpoint in this directory")
    return found[-1]


def load_weights(checkpoint: Path, name: str = "ema") -> dict[str, torch.Tensor]:
    """The weights ``name`` (``model``, ``ema``, ...) of a checkpoint, read without unpickling anything."""
    path = checkpoint / f"{name}.safetensors"
    try:
        return load_file(path)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: cannot read weights ({e})") from None


def load_training_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return torch.load(checkpoint / "training.pt", weights_only=True, map_location="cpu")
    except Exception as e:  # the unpickler raises many types for a corrupt or foreign file
        raise CheckpointError(f"{checkpoint / 'training.pt'}: cannot read training state "
                              f"({type(e).__name__})") from None


def resumed_run_config(run_dir: Path, cls: type = RunConfig) -> Any:
    """The config a resume of ``run_dir`` continues with: the newest checkpoint's whose config.json is as written
    (a damaged one is passed over). Only that file is hashed here; the trainer verifies the whole checkpoint it
    loads, so the larger files are read once."""
    return load_checkpoint_config(newest_intact(run_dir, ("config.json",)), cls)


def load_checkpoint_config(checkpoint: Path, cls: type = RunConfig) -> Any:
    path = checkpoint / "config.json"
    if not path.exists():
        raise CheckpointError(f"{checkpoint}: no config.json")
    config = load_config(path, cls)
    if isinstance(config, RunConfig):  # a hand-edited or foreign file: its ranges, not only its types
        try:
            at_least("diffusion_steps", config.diffusion.diffusion_steps, 1)
            at_least("image_size", config.model.image_size, 1)
            config.model.check()
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
    return config


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights, turning any key or shape mismatch into one line."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{source}: weights do not match the model ({len(missing)} missing, {len(extra)} unexpected; e.g. "
            f"{(missing or extra)[0]})"
        )
    # An nn.Linear saved where the model now has the equivalent 1x1 convolution (the attention
    # projections before they became convolutions) loads as that convolution.
    state = {k: v[:, :, None, None] if v.dim() == 2 and own[k].shape == (*v.shape, 1, 1) else v
             for k, v in state.items()}
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{source}: weight {k} has shape {tuple(v.shape)}, "
                                  f"the model expects {tuple(own[k].shape)}")
    module.load_state_dict(state)


TUNED_STEPS = "timesteps.json"


def tuned_key(sampler: str, nfe: int, ema: bool) -> str:
    """The entry of a tuned schedule in a checkpoint's ``timesteps.json``: sampler, budget and weights."""
    return f"{sampler}@{nfe}" + ("" if ema else " (raw weights)")


def read_tuned_steps(checkpoint: Path) -> dict[str, dict]:
    """The tuned schedules saved beside a checkpoint (:mod:`gaussdiff.samplers.tuning`); {} when there are none,
    and a :class:`CheckpointError` for a file that is not a JSON object (a sampler would otherwise silently fall
    back to untuned steps)."""
    path = checkpoint / TUNED_STEPS
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({type(e).__name__}); run gaussdiff tune again, or delete "
                              "it to sample with untuned steps") from None
    if not isinstance(found, dict):
        raise CheckpointError(f"{path}: not what gaussdiff tune writes (an object of tuned steps); run gaussdiff "
                              "tune again, or delete it")
    for key, entry in found.items():  # a null entry would read as "not tuned" and sample untuned steps unsaid
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: the entry {key!r} is {json.dumps(entry)}, not what gaussdiff tune writes; "
                                  "run gaussdiff tune again, or delete the file")
    return found


def save_tuned_steps(checkpoint: Path, key: str, entry: dict) -> Path:
    """Add or replace one tuned schedule in the checkpoint's ``timesteps.json`` (atomically)."""
    try:
        found = read_tuned_steps(checkpoint)
    except CheckpointError:  # a damaged file is replaced by what this tuning found
        found = {}
    found[key] = entry
    return atomic_write(checkpoint / TUNED_STEPS, lambda tmp: tmp.write_text(json.dumps(found, indent=1)))
