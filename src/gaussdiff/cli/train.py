"""``gaussdiff train``: train a diffusion model; ``--resume`` continues a run exactly. Under ``torchrun`` every
rank runs this command and the run is trained data-parallel (README, "Running on many GPUs")."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import tyro

from ..errors import CheckpointError, UsageError
from ..training.checkpoint import list_checkpoints, newest_intact, resumed_run_config, step_of
from ..training.config import RunConfig, describe_before_data, to_dict
from ..training.conv_cache import DEFAULT_CONV_CACHE
from ..training.distributed import Distributed, joined, launched_by_torchrun, restarted_by_torchrun
from ..training.loop import resolve_device
from ..training.control import Stopped
from ..training.trainer import Trainer
from .logger import RunLogger
from .options import check_new_run_dir, check_writable_dir, print_error

# What a resumed run may change (dotted paths in RunConfig); everything else would make it another run.
CHANGEABLE = ("train.train_steps", "train.bookkeeping.", "train.device", "train.optim.precision", "train.compile",
              "train.gradient_checkpointing",
              "train.memory_format", "train.preview_sampler", "train.preview_steps", "train.skip_nonfinite",
              "train.dist_timeout", "train.preview_images", "data.workers")


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """A config's dict (:func:`~gaussdiff.training.config.to_dict`) as {dotted.path: value}."""
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def option(path: str) -> str:
    return "--" + path.rsplit(".", 1)[-1].replace("_", "-")


def resumed_config(saved: RunConfig, asked: RunConfig) -> RunConfig:
    """``saved`` with the options a resume asked to change (``asked`` is the command line parsed over ``saved``).

    Steps, intervals, device, precision and the like may change, and the change is recorded with the run;
    the architecture, diffusion, data and optimiser's settings may not. A longer ``--train-steps`` extends a
    finished run: the cosine learning-rate schedule is stretched to the new last step (so the rate rises
    again from where it had decayed to), a constant one stays constant, and one_cycle cannot be extended.
    """
    refuse_changes(saved, asked, CHANGEABLE, "steps, intervals, device, precision, compiling, gradient "
                                             "checkpointing and the like")
    refuse_one_cycle_length(saved.train.train_steps, asked.train.train_steps, saved.train.optim.lr_schedule)
    return asked


def refuse_ending_before(run_dir: Path, train_steps: int) -> None:
    """A resumed run's --train-steps must reach the step of the checkpoint it continues from (the newest intact one: a
    damaged newer one is passed over), refused before the config that says so is written over the run's (more
    extends the run)."""
    try:
        reached = step_of(newest_intact(run_dir))
    except CheckpointError:
        return  # nothing to continue from: the resume itself says so in one line
    if train_steps < reached:
        raise UsageError(f"{run_dir} is at step {reached}: --train-steps {train_steps} ends before it (give {reached} "
                         "or more; more extends the run)")


def refuse_one_cycle_length(saved_steps: int, asked_steps: int, lr_schedule: str) -> None:
    """A resumed one_cycle run keeps its --train-steps: its schedule ends at the planned last step."""
    if asked_steps != saved_steps and lr_schedule == "one_cycle":
        raise UsageError("a one_cycle run cannot change --train-steps (the schedule ends at the planned last step)")


def refuse_changes(saved: Any, asked: Any, changeable: tuple[str, ...], allowed: str) -> None:
    """One line naming every option ``asked`` changes from ``saved`` (configs of one type) that ``changeable``
    (dotted fields; a trailing dot: a whole section) does not allow; ``allowed`` says in words what may change."""
    before, after = flat(to_dict(saved)), flat(to_dict(asked))
    changed = sorted(k for k in after if after[k] != before.get(k))
    refused = [k for k in changed if not any(k == c or (c.endswith(".") and k.startswith(c)) for c in changeable)]
    if refused:
        raise UsageError(f"a resumed run keeps its {', '.join(option(k) for k in refused)} (its saved config); "
                         f"only {allowed} may change: start a new --run-dir instead")


def reparsed_over_saved(command: Any, args: list[str], cls: type, prog: str) -> Any:
    """For ``--resume``: ``command`` (a trainer's, with ``resume``, ``run_dir`` and ``config`` of type ``cls``) parsed
    again from ``args`` over the run's saved config instead of the defaults, so that what the user typed is what
    differs from the saved run; ``command`` itself when there is nothing to resume."""
    if not command.resume or command.run_dir is None or not list_checkpoints(command.run_dir):
        return command
    saved = resumed_run_config(command.run_dir, cls)  # the config the resume will continue with
    return tyro.cli(type(command), args=args, default=dataclasses.replace(command, config=saved), prog=prog)


def lost_contact(e: RuntimeError) -> str | None:
    """What a collective's failure says, in a few words, when another rank died or hung (gloo's and NCCL's
    errors are RuntimeErrors); None for any other error."""
    text = str(e)
    if isinstance(e, torch.distributed.DistError) or "gloo" in text or "NCCL" in text:
        timed_out = "timed out" in text.lower() or "timeout" in text.lower()
        return "no answer from another rank within --dist-timeout (it hangs)" if timed_out else \
            "another rank stopped (its connection closed)"
    return None


@dataclass
class Train:
    """Train a diffusion model (with no options: the main job, digits in about 5 minutes on 2 CPU cores)."""

    config: Annotated[RunConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=RunConfig)
    run_dir: Path | None = None
    """Where the run lives (default: runs/<data>-<date>-<time>; needed under torchrun)."""
    resume: bool = False
    """Continue the run in --run-dir from its newest readable checkpoint, with its saved config; --train-steps,
    the intervals (--log-every, --sample-every, --checkpoint-every, --keep-checkpoints), --device, --precision,
    --compile, --gradient-checkpointing, --memory-format, --skip-nonfinite, --dist-timeout, --workers and the
    previews (--preview-sampler, --preview-steps, --preview-images) may change (a longer --train-steps extends a
    finished run)."""
    dry_run: bool = False
    """Print the config and exit, without loading the data (which fills in the image size, channels, classes and
    the U-Net's input when training starts; config.json records them)."""

    def reparse(self, args: list[str]) -> Train:
        """For --resume: the command line again, over the run's saved config (:func:`reparsed_over_saved`)."""
        return reparsed_over_saved(self, args, RunConfig, "gaussdiff train")

    def __call__(self) -> None:
        elastic_restart = launched_by_torchrun() and restarted_by_torchrun()
        if launched_by_torchrun() and self.run_dir is None:
            raise UsageError("under torchrun give --run-dir: every rank (and a restarted job) must find the same run")
        resume = self.resume or (elastic_restart and self.run_dir is not None and bool(list_checkpoints(self.run_dir)))
        if resume:
            if self.run_dir is None:
                raise UsageError("--resume needs --run-dir")
            found = list_checkpoints(self.run_dir)
            if not found:
                raise UsageError(f"{self.run_dir}: nothing to resume (no checkpoint)")
            saved = resumed_run_config(self.run_dir)  # a damaged newer config.json is passed over
            config = saved if elastic_restart and not self.resume else resumed_config(saved, self.config)
            refuse_ending_before(self.run_dir, config.train.train_steps)
        else:
            config = self.config
            if self.run_dir is not None:
                check_new_run_dir(self.run_dir)
        if self.dry_run:
            config.check()  # what the data does not decide: a dry run must not pass what training refuses
            resolve_device(config.train.device)
            print(describe_before_data(config))
            return
        run_dir = self.run_dir or Path("runs") / f"{Path(config.data.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_writable_dir(run_dir, keep=launched_by_torchrun())  # a file in the way is one line, before training
        with joined(resolve_device(config.train.device), config.train.dist_timeout) as dist:
            self.train(config, run_dir, dist, resume)

    @staticmethod
    def train(config: RunConfig, run_dir: Path, dist: Distributed, resume: bool) -> None:
        trainer = Trainer(config, run_dir, logger=RunLogger(), dist=dist, conv_cache=DEFAULT_CONV_CACHE)
        say = (lambda *a, **k: print(*a, **k)) if dist.is_main else (lambda *a, **k: None)
        if config.latent.latent is not None and config.diffusion.schedule == "cosine":
            # Latents cannot be clipped to [-1, 1], and the cosine schedule's last step (alpha_bar 2.4e-9)
            # multiplies the eps error by 1 / sqrt(alpha_bar) in the x0 estimate (docs/latent.md).
            say("gaussdiff: note: latent runs sample far better on --schedule linear (LDM's) than on cosine",
                file=sys.stderr)
        n_params = sum(p.numel() for p in trainer.model.parameters())
        ranks = f", {dist.world_size} processes" if dist.active else ""
        # What the network computes in (--precision auto measured, --compile auto resolved at this start).
        compiled = f", compiled ({trainer.compile_mode})" if trainer.compile_mode != "off" else ""
        setup = (f"{trainer.config.train.optim.precision}, "
                 f"{'channels_last' if trainer.channels_last else 'contiguous'}{compiled}")
        latent = trainer.latent
        space = f" -> latents {(latent.channels, latent.size, latent.size)}" if latent is not None else ""
        say(f"run {run_dir}: {len(trainer.data)} images {trainer.data.shape}{space}, {n_params / 1e6:.2f}M parameters, "
            f"{trainer.device}{ranks}, {setup}", file=sys.stderr)
        note = trainer.config.model.attention_note()
        if note:
            say(f"gaussdiff: note: {note}", file=sys.stderr)
        try:
            result = trainer.run(resume=resume)
        except Stopped as e:
            where = f"checkpoint {e.checkpoint}" if e.checkpoint else "no checkpoint"
            say(f"gaussdiff: {e} ({where}); continue with --resume --run-dir {run_dir}", file=sys.stderr)
            sys.exit(128 + e.signum)
        except RuntimeError as e:
            if not dist.active or not lost_contact(e):
                raise
            found = list_checkpoints(run_dir)
            print_error(f"rank {dist.rank}: {lost_contact(e)}; the last checkpoint is "
                        f"{found[-1] if found else 'none'} (torchrun --max-restarts K resumes from it)")
            sys.exit(1)
        except KeyboardInterrupt:  # before the signal handlers are in place, a second Ctrl-C, or from a thread
            found = list_checkpoints(run_dir)
            last = f"; resume from {found[-1]} with --resume --run-dir {run_dir}" if found else ""
            say(f"gaussdiff: interrupted at step {trainer.step}{last}", file=sys.stderr)
            sys.exit(130)
        say(f"done: {result.step} steps; samples in {run_dir / 'samples.png'}, loss curve in {run_dir / 'loss.png'}")
