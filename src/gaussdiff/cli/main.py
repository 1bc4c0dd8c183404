"""The ``gaussdiff`` command: train, train-classifier, train-autoencoder, sample, eval, show, tune. Built from the typed configs with tyro.

Every expected failure (bad data, a missing or mismatched checkpoint, a bad option) prints one
line, ``gaussdiff: error: ...``, and exits 2; an interrupted run keeps its last checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys

import tyro

from ..errors import GaussdiffError
from .eval import Eval
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
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["train-classifier"]:
        args = [LEGACY_FLAGS.get(a, a) for a in args]
    command = parse(args)
    try:
        command()
    except GaussdiffError as e:
        print(f"gaussdiff: error: {e}", file=sys.stderr)
        sys.exit(2)


def parse(args: list[str]):
    """tyro's parse of ``args``; its boxed, many-line report of a bad option becomes one line and exit 2."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.extras.subcommand_cli_from_dict(COMMANDS, args=args, prog="gaussdiff")
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        lines = [re.sub(r"^[\s│╭╮╰╯─|]+|[\s│╭╮╰╯─|]+$", "", line) for line in captured.getvalue().splitlines()]
        lines = [line for line in lines if line and not line.startswith("For full helptext")]
        title, details = (lines[0].rstrip(".:"), " ".join(lines[1:])) if lines else ("bad arguments", "")
        message = details if details.lower().startswith(title.lower()) else f"{title}: {details}".rstrip(": ")
        print(f"gaussdiff: error: {message} (see gaussdiff --help)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
