"""The ``gaussdiff`` command: train, train-classifier, train-autoencoder, sample, eval, show, tune, export, prepare.
Built from the typed configs with tyro.

Every expected failure (bad data, a missing or mismatched checkpoint, a bad option) prints one
line, ``gaussdiff: error: ...``, and exits 2; an interrupted run keeps its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys

import torch
import tyro

from ..errors import GaussdiffError, UsageError
from .eval import Eval
from .export import Export
from .prepare import Prepare
from .options import one_line_errors, print_error
from .sample import Sample
from .show import Show
from .train import Train
from .train_autoencoder import TrainAutoencoder
from .train_classifier import LEGACY_FLAGS, TrainClassifier
from .tune import Tune

COMMANDS = {
    "train": Train,
    "train-autoencoder": TrainAutoencoder,
    "train-classifier": TrainClassifier,
    "sample": Sample,
    "eval": Eval,
    "show": Show,
    "tune": Tune,
    "export": Export,
    "prepare": Prepare,
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["train-classifier"]:
        args = [LEGACY_FLAGS.get(a, a) for a in args]
    try:
        command = parse(args)
        command()
    except GaussdiffError as e:
        print_error(str(e))
        sys.exit(2)
    except KeyboardInterrupt:  # where no command says more (train keeps a checkpoint, sample its batches)
        print("gaussdiff: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader of stdout left (gaussdiff train --help | head): stop as a pipe's writer does
        # Python flushes stdout at exit into the same closed pipe: point it at /dev/null first (Python's docs, "Note
        # on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        line = out_of_memory(e)
        if line is None:
            raise
        print_error(line)
        sys.exit(1)


def out_of_memory(e: BaseException) -> str | None:
    """One line for a failed allocation (the CPU allocator's report, CUDA's or Python's), else None: an --n or
    --batch-size too large for this machine, which the allocator answers with a long traceback."""
    text = str(e)
    if not (isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text):
        return None
    tried = re.search(r"allocate (\d+) bytes", text)
    size = f" (tried to allocate {int(tried[1]) / 2**30:.1f} GiB)" if tried else ""
    where = "GPU" if isinstance(e, torch.OutOfMemoryError) else "this machine's"
    return f"out of {where} memory{size}: ask for fewer images at once (--n, --batch-size)"


def check_command(args: list[str]) -> None:
    """One line for a command word tyro would answer with its whole usage: a misspelt command (with the nearest
    one), or an option before the command."""
    subcommands = {"": list(COMMANDS), "show": ["forward", "trajectory"]}
    for where, word in (("", args[0] if args else None), ("show", args[1] if args[:1] == ["show"] else None)):
        names = subcommands[where]
        if word is None or word in names or word in ("-h", "--help"):
            continue
        command = f"gaussdiff {where}".rstrip()
        if word.startswith("-"):
            meant = next((a for a in args if a in names), "COMMAND")
            raise UsageError(f"{word}: options follow the command ({command} {meant} {word} ...; commands: "
                             f"{', '.join(names)})")
        near = difflib.get_close_matches(word, names, n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise UsageError(f"{command}: no command {word!r}{hint} (commands: {', '.join(names)})")


def parse(args: list[str]):
    """tyro's parse of ``args``; its boxed, many-line report of a bad option becomes one line and exit 2."""
    check_command(args)
    # Where an error about an option sends the user: the help of the (sub)command it was given to.
    words = ["gaussdiff"] + args[:1] if args[:1] and args[0] in COMMANDS else ["gaussdiff"]
    if words[1:] == ["show"] and args[1:2] and args[1] in ("forward", "trajectory"):
        words.append(args[1])
    name = " ".join(words)
    command = one_line_errors(lambda: tyro.extras.subcommand_cli_from_dict(COMMANDS, args=args, prog="gaussdiff"), name)
    if isinstance(command, (Train, TrainAutoencoder)):
        # A resumed run's options are read over its saved config (what the user typed is what changes).
        command = one_line_errors(lambda: command.reparse(args[1:]), name)
    check_seeds(command)
    return command


def check_seeds(options: object) -> None:
    """Every ``seed`` in the parsed options (nested configs included) fits torch's generators, whose seeds are
    64-bit: a larger one is one line here, not an overflow deep in the first ``manual_seed``."""
    if not dataclasses.is_dataclass(options):
        return
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if f.name == "seed" and isinstance(value, int) and not -(2**63) <= value < 2**64:
            raise UsageError(f"--seed {value} does not fit in 64 bits (-2**63 .. 2**64 - 1)")
        check_seeds(value)


if __name__ == "__main__":
    main()
