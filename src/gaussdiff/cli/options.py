"""Checks of options that several subcommands share."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any, NamedTuple, get_args

import torch

from ..conditioning.guidance import GuidanceConfig
from ..diffusion.schedule import Spacing
from ..errors import CheckpointError, UsageError, WriteError, check_finite_at_least_zero
from ..nets.fast import Setup, describe
from ..samplers.run import TAKES_ETA, SamplerName, default_spacing, steps_for_nfe
from ..samplers.tuning import tuning_steps
from ..training.checkpoint import TUNED_STEPS, is_checkpoint, list_checkpoints, read_tuned_steps, tuned_key
from ..training.classifier import WEIGHTS as CLASSIFIER_WEIGHTS
from ..training.interop import is_diffusers_folder
from ..training.run import Trained


def print_error(message: str) -> None:
    """``gaussdiff: error: message`` on stderr in one write, line end included: under torchrun every rank shares
    the terminal, and print's two writes (the text, then the newline) let another rank's line land between them,
    gluing the two lines into one."""
    sys.stderr.write(f"gaussdiff: error: {message}\n")
    sys.stderr.flush()


def at_least(option: str, value: int | None, low: int, none: str = "") -> None:
    """Refuse ``value`` of ``option`` below ``low`` as one line (None passes: the option's default, ``none``)."""
    if value is not None and value < low:
        raise UsageError(f"{option} must be at least {low}{none}, not {value}")


def memory_bytes() -> int | None:
    """This machine's physical memory, where the system says (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(option: str, n: int, shape: Sequence[int], memory: int | None = None) -> None:
    """Refuse ``n`` images of ``shape`` (C, H, W) that cannot be held as they are gathered (uint8, kept twice: the
    finished chunks and the whole they are joined into) in this machine's memory, before any sampling: such an
    ``n`` ran for ever without a word, or failed at its end with every sample lost."""
    memory = memory_bytes() if memory is None else memory
    need = 2 * n * math.prod(shape)
    if memory is not None and need > memory:
        size = "x".join(map(str, shape))
        raise UsageError(f"{option} {n}: {n} images of {size} take {need / 2**30:.1f} GiB as they are gathered, and "
                         f"this machine has {memory / 2**30:.1f} GiB of memory: ask for fewer")


def check_suffix(path: Path, suffixes: tuple[str, ...]) -> None:
    """Refuse an ``--out`` whose kind of file is not one of ``suffixes`` (".png", ".npz"), before any work."""
    if path.suffix not in suffixes:
        raise UsageError(f"--out {path}: expected a {' or '.join(suffixes)} file")


def _blocker(directory: Path) -> Path | None:
    """The first existing path on the way to ``directory`` that is not a directory (a file in the way), if any."""
    for ancestor in reversed([directory, *directory.parents]):
        if ancestor.exists() and not ancestor.is_dir():
            return ancestor
    return None


def _try_writing_in(directory: Path, what: str, keep: bool) -> None:
    """Make ``directory`` (and its parents) and write and remove a file there; the directories it had to make
    are removed again unless ``keep``. A failure is a :class:`WriteError` naming ``what``."""
    made = [d for d in [directory, *directory.parents] if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".gaussdiff-write-test-"):
            pass
    except OSError as e:
        blocker = _blocker(directory)
        why = f"{blocker} is a file, not a directory" if blocker is not None else (
            f"cannot write in {directory}: {e.strerror or type(e).__name__}")
        raise WriteError(f"{what}: {why}") from None
    finally:
        if not keep:
            for d in made:  # deepest first
                with contextlib.suppress(OSError):
                    d.rmdir()


def check_writable(path: Path, option: str = "--out") -> None:
    """That the file ``path`` can be written, checked before the work whose result it holds (not after, when the
    samples would be lost): its directory can be made and written in, and ``path`` is not a directory. Leaves
    nothing behind."""
    if path.is_dir():
        raise WriteError(f"{option} {path}: a directory, not a file")
    _try_writing_in(path.parent, f"{option} {path}", keep=False)


def check_writable_dir(path: Path, option: str = "--run-dir", keep: bool = False) -> None:
    """That the directory ``path`` can be made and written in (``train --run-dir`` before it trains; a file
    there or in its way, or an unwritable place, is one line). The directories made for the check are removed
    unless ``keep`` (under torchrun, where every rank checks at once, keep them)."""
    if path.exists() and not path.is_dir():
        raise WriteError(f"{option} {path}: a file, not a directory")
    _try_writing_in(path, f"{option} {path}", keep=keep)


def check_new_run_dir(run_dir: Path, can_resume: bool = True) -> None:
    """A new run must not start in a directory that holds another (a run's checkpoints, a classifier, one
    checkpoint of a run, a diffusers model): it would overwrite that run's ``config.json``."""
    if (run_dir / CLASSIFIER_WEIGHTS).exists():
        raise UsageError(f"{run_dir} already holds a classifier: pass another --run-dir")
    if is_checkpoint(run_dir):  # its config.json is the checkpoint's own
        hint = "; to continue its run, --resume --run-dir the run's own directory" if can_resume else ""
        raise UsageError(f"{run_dir} is a checkpoint of a run: pass another --run-dir{hint}")
    if is_diffusers_folder(run_dir):
        raise UsageError(f"{run_dir} holds a diffusers model: pass another --run-dir")
    if list_checkpoints(run_dir):
        hint = "pass --resume to continue it, or another --run-dir" if can_resume else "pass another --run-dir"
        raise UsageError(f"{run_dir} already holds a run: {hint}")


def check_steps(steps: int | None, trained: Trained) -> None:
    """``--steps`` must be a respacing of the run's schedule."""
    if steps is not None and not 1 <= steps <= trained.diffusion.num_steps:
        raise UsageError(f"--steps must lie in 1..{trained.diffusion.num_steps}")


DEFAULT_STEPS = 50
"""The respaced steps a sampler takes when neither --steps nor --nfe says (as diffusers' DDIMPipeline takes)."""


def sampling_steps(steps: int | None, trained: Trained) -> int:
    """The steps to sample ``trained`` with: ``--steps`` (``steps``) checked to respace the run's schedule, else
    ``DEFAULT_STEPS``, or every step of a run that has fewer. (With --nfe, which chooses the steps itself, --steps is
    None and the value goes unused.)"""
    if steps is None:
        return min(DEFAULT_STEPS, trained.diffusion.num_steps)
    check_steps(steps, trained)
    return steps


@dataclass
class SamplerOptions:
    """Which sampler, and on which steps."""

    # Declared once for sample, eval and show trajectory (each keeps its own --steps: a tuple for a cascade's stages).

    sampler: SamplerName = "ddim"
    """The sampler: ddpm, ddim, euler, heun, euler-a, dpm++2m, dpm++3m, dpm++2s, dpm++2m-sde, unipc, unipc-bh1."""
    nfe: int | None = None
    """A budget of network evaluations instead of --steps: the sampler's steps are chosen to make exactly that many."""
    timesteps: str = "auto"
    """Which steps: auto (with --nfe, the steps `gaussdiff tune` saved for this sampler, else trailing for dpm++*
    and unipc*, linspace for the rest), leading, trailing, linspace (integer times), karras (Karras et al.'s
    rho = 7 sigmas), logsnr (uniform in log-SNR), or an explicit comma-separated list of times, noisiest first."""
    eta: float | None = None
    """DDIM's eta, S_churn of euler/heun, euler-a's noise scale (default: 0, euler-a 1)."""

    def check(self) -> None:
        """--eta where the sampler reads it."""
        check_eta(self.eta, self.sampler)

    def steps_on(self, runs: Sequence[Trained], steps: Any = None, ema: bool = True) -> Steps:
        """The steps to take on ``runs`` (a cascade's stages, or one run): --nfe checked against each, --timesteps
        read on the first. ``steps``: the ``--steps`` given (None if none)."""
        for run in runs:
            check_nfe(self.nfe, self.sampler, run, steps)
        return parse_timesteps(self.timesteps, self.nfe, runs[0], self.sampler, ema, steps)


class Steps(NamedTuple):
    """Which steps a sampler takes, from ``--timesteps``: a spacing, or explicit times; and how to say so."""

    spacing: Spacing
    times: list[float] | None
    label: str


def warn_untrained_null(runs: Sequence[Trained], guidance: float) -> None:
    """Classifier-free guidance of a run trained without --p-uncond extrapolates away from a null condition the
    network never saw (its embedding is as initialized): say so in one line; the samples are still drawn."""
    for trained in runs:
        guided = [c for c in trained.conditions if c.noun in ("labels", "captions")]  # what guidance drops
        if guidance and guided and trained.source == "gaussdiff" and trained.config.conditioning.p_uncond == 0:
            print(f"gaussdiff: warning: {trained.checkpoint} was trained without --p-uncond, so its unconditional "
                  f"branch never learned: --guidance {guidance:g} steers by an untrained null condition "
                  "(train with --p-uncond 0.1, or sample with --guidance 0)", file=sys.stderr)


def budget_of(nfe: int | None, steps: Sequence[int], times: Sequence[float] | None = None) -> str:
    """The sampling budget in words, for a figure: --nfe's evaluations (tuned steps spend exactly those), else an
    explicit list's own count of ``times`` (whatever --steps said), else ``steps`` (one a cascade stage): ``20 NFE``,
    ``4 steps``, ``50/25 steps``."""
    if nfe is not None:
        return f"{nfe} NFE"
    if times is not None:
        return f"{len(times)} steps"
    return "/".join(map(str, steps)) + " steps"


def describe_eta(sampler: str, eta: float | None) -> str:
    """--eta in words after a comma where it is not the sampler's default (0, euler-a's 1), else '': DDIM at eta 1
    draws fresh noise at every step, and a figure must say so."""
    default = 1.0 if sampler == "euler-a" else 0.0
    return f", eta {eta:g}" if eta is not None and eta != default else ""


def check_guidance(guide: GuidanceConfig) -> None:
    """The guidance options as ``GuidanceConfig.check`` refuses them, and the classifier's scale and mode refused
    without ``--classifier``: they would change nothing."""
    guide.check()
    if guide.classifier is None and (guide.classifier_scale != 1.0 or guide.classifier_mode != "paired"):
        raise UsageError("--classifier-scale and --classifier-mode steer classifier guidance: pass --classifier RUN "
                         "(a run of gaussdiff train-classifier)")


def describe_guidance(guide: GuidanceConfig) -> str:
    """The guidance samples were drawn with, in words after a comma ('' for none), for a figure or a caption:
    ``, guidance w = 2, classifier runs/clf at scale 5``."""
    words = f", guidance w = {guide.guidance:g}" if guide.guidance else ""
    if guide.classifier is not None:
        words += f", classifier {guide.classifier} at scale {guide.classifier_scale:g}"
    return words


def weights_of(trained: Trained, ema: bool = True) -> str:
    """Which weights a figure of ``trained`` comes from: a run's EMA weights (unless ``ema`` is False: its raw
    ones), its only weights if it kept no EMA (``--ema-decay None``), or the only weights a diffusers folder has."""
    if trained.source != "gaussdiff":
        return "the folder's weights"
    if not ema:
        return "raw weights (--no-ema)"
    return "EMA weights" if trained.config.train.optim.ema_decay is not None else "weights (no EMA kept)"


def note_tuned_elsewhere(checkpoint: Path, key: str, spacing: str) -> None:
    """Say so when another checkpoint of the run has steps tuned for ``key`` and this one has none: tuned steps
    belong to the weights they were tuned for, so a run trained on after tuning samples its default until tuned
    again, which would otherwise pass unsaid."""
    others = []
    for other in list_checkpoints(checkpoint.parent.parent):
        with contextlib.suppress(CheckpointError):  # a damaged file elsewhere is that checkpoint's business
            if other != checkpoint and key in read_tuned_steps(other):
                others.append(other.name)
    if others:
        print(f"gaussdiff: note: {checkpoint.name} has no steps tuned for this sampler and --nfe ({others[-1]} has; "
              f"they fit its weights): sampling on {spacing} spacing; gaussdiff tune tunes this one", file=sys.stderr)


def parse_timesteps(value: str, nfe: int | None, trained: Trained, sampler: str = "ddim", ema: bool = True,
                    steps: Any = None) -> Steps:
    """``--timesteps``: ``auto`` (the steps tuned for this sampler and --nfe in the checkpoint's folder, by
    ``gaussdiff tune``, else trailing for DPM-Solver++ and UniPC and linspace for the rest), a spacing name, or
    an explicit comma-separated list of original-scale times, noisiest first; checked against the run's schedule
    and ``sampler``. ``steps``: the ``--steps`` given (None if none), which an explicit list would override."""
    if trained.diffusion.schedule.zero_terminal_snr:
        if value in ("leading", "karras", "logsnr"):
            raise UsageError(f"--timesteps {value} does not start at the last step, where this zero-terminal-SNR run "
                             "starts from pure noise: use trailing or linspace")
        if sampler in ("euler", "heun", "euler-a"):
            raise UsageError(f"--sampler {sampler} runs in sigma = sqrt((1 - alpha_bar) / alpha_bar), infinite at "
                             "zero terminal SNR: use ddim, dpm++2m or unipc")
    if value == "auto":
        tuned = read_tuned_steps(trained.checkpoint).get(tuned_key(sampler, nfe, ema)) if nfe is not None else None
        if tuned is None:
            if trained.source == "diffusers":  # its scheduler config's own spacing
                return Steps(trained.spacing, None, f"{trained.spacing} spacing (the scheduler config's)")
            spacing = default_spacing(sampler)
            if nfe is not None:
                note_tuned_elsewhere(trained.checkpoint, tuned_key(sampler, nfe, ema), spacing)
            return Steps(spacing, None, f"{spacing} spacing")
        try:
            times = [float(t) for t in tuned["timesteps"]]
            if len(times) != tuning_steps(sampler, nfe):
                raise ValueError(f"{len(times)} times, where {sampler} at {nfe} NFE takes {tuning_steps(sampler, nfe)}")
            trained.diffusion.at(times[::-1])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{trained.checkpoint / TUNED_STEPS}: the entry for {sampler} at {nfe} NFE is not a "
                                  f"list of decreasing times ({e}); run gaussdiff tune again") from None
        return Steps("linspace", times, f"steps tuned by gaussdiff tune ({TUNED_STEPS})")
    if value in get_args(Spacing):
        return Steps(value, None, f"{value} spacing")  # type: ignore[arg-type]
    try:
        times = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--timesteps must be auto, one of {', '.join(get_args(Spacing))}, or a comma-separated "
                         f"list of times, not {value!r}") from None
    last = trained.diffusion.num_steps - 1
    if not times:
        raise UsageError(f"--timesteps {value!r} names no time: give a comma-separated list, noisiest first")
    if any(not 0 <= t <= last for t in times):
        raise UsageError(f"--timesteps: every time must lie in 0..{last}")
    if any(b >= a for a, b in zip(times, times[1:])):
        raise UsageError("--timesteps must decrease strictly, noisiest first")
    if nfe is not None:
        raise UsageError("--nfe and an explicit --timesteps list do not combine: the list fixes the steps")
    if steps is not None:
        raise UsageError("--steps and an explicit --timesteps list do not combine: the list fixes the steps")
    try:
        trained.diffusion.at(times[::-1])
    except ValueError as e:  # e.g. two times so close that they have the same alpha_bar
        raise UsageError(f"--timesteps {value}: {e}") from None
    return Steps("linspace", times, f"timesteps {value}")


def check_nfe(nfe: int | None, sampler: str, trained: Trained, steps: Any = None) -> None:
    """``--nfe`` must give at least one step and at most the run's steps, and comes without ``--steps`` (``steps``,
    None if not given), which it would override."""
    if nfe is None:
        return
    if steps is not None:
        raise UsageError("--steps and --nfe do not combine: --nfe chooses the steps (give one of them)")
    if nfe < 1:
        raise UsageError("--nfe must be at least 1")
    if steps_for_nfe(sampler, nfe) > trained.diffusion.num_steps:
        raise UsageError(f"--nfe {nfe} needs more steps than the run's {trained.diffusion.num_steps}")


def check_eta(eta: float | None, sampler: str) -> None:
    """``--eta`` must be a finite number >= 0, for a sampler that reads it."""
    if eta is None:
        return
    check_finite_at_least_zero("--eta", eta)
    if eta > 0 and sampler not in TAKES_ETA:  # 0, the default, is every sampler's
        raise UsageError(f"--eta is read by {', '.join(TAKES_ETA)}; {sampler} takes none")


def parse_class(value: str | None, num_classes: int | None, n: int) -> tuple[torch.Tensor | None, int | None]:
    """``--class K`` or ``--class all`` -> labels [n] (and the grid's row length for ``all``)."""
    if value is None:
        return None, None
    if num_classes is None:
        raise UsageError("--class needs a run trained on labelled data")
    if value == "all":
        per_class = -(-n // num_classes)
        return torch.arange(num_classes).repeat_interleave(per_class), per_class
    if not value.isdecimal() or not 0 <= int(value) < num_classes:  # isdigit passes "²", which int() refuses
        raise UsageError(f"--class must be 'all' or a class in 0..{num_classes - 1}, not {value!r}")
    return torch.full((n,), int(value)), None


def read_prompts(prompts: Sequence[str], prompt_file: Path | None) -> list[str]:
    """``--prompt`` and the lines of ``--prompt-file`` (blank lines skipped), in that order."""
    out = list(prompts)
    if prompt_file is not None:
        try:
            lines = prompt_file.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not a word
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--prompt-file {prompt_file}: cannot read it ({type(e).__name__})") from None
        out += [line.strip() for line in lines if line.strip()]
        if not any(line.strip() for line in lines):
            raise UsageError(f"--prompt-file {prompt_file}: no prompts in it (one per line)")
    return out


def unrecognized(report: str, command: str) -> str | None:
    """tyro's report of options it does not know, as one phrase: what was given and the near names that
    ``command`` itself takes (tyro suggests those of every subcommand, each with its help). None if the report
    is about something else.

    ``unrecognized option(s) --stepz 3; did you mean --steps?``
    """
    # The box's sides go, its inner indentation stays: suggestions are the least-indented lines of their block,
    # their help and where they belong ("in gaussdiff eval --help") further in.
    lines = [re.sub(r"^[│|] ?", "", line).rstrip().rstrip("│|").rstrip() for line in report.splitlines()]
    text = [line.strip() for line in lines]
    heads = [i for i, line in enumerate(text) if line.startswith("Unrecognized options")
             or line.startswith("Unrecognized or misplaced options")]
    if not heads:
        return None
    given: list[str] = []
    at = heads[-1]
    inline = text[at].split(":", 1)[1] if text[at].startswith("Unrecognized options:") else ""
    if inline.strip():  # one line: "Unrecognized options: --sampel, ddim"
        given = [w.strip() for w in inline.split(", ") if w.strip()]
    else:  # one word a line: "--steps (applied to gaussdiff train)", "--bogus" then "1"
        for line in text[at + 1:]:
            if not line or line.startswith("Arguments are applied") or re.fullmatch(r"[-─=+]+", line):
                break
            given.append(re.sub(r"\s*\(applied to [^)]*\)$", "", line))
    if not given:
        return None
    suggestions: list[tuple[list[str], set[str]]] = []  # each suggestion's flags, the commands it is in
    if "Perhaps you meant:" in text:
        block = lines[text.index("Perhaps you meant:") + 1:]
        block = block[:next((i for i, line in enumerate(block) if re.fullmatch(r"\s*[-─=+]{3,}\s*", line)
                             or line.strip().startswith("For full helptext")), len(block))]
        indent = min((len(line) - len(line.lstrip()) for line in block if line.strip()), default=0)
        for line in block:
            where = re.fullmatch(r"\s*in (.+) --help", line)
            if where and suggestions:
                suggestions[-1][1].add(where.group(1))
            elif len(line) - len(line.lstrip()) == indent and line.lstrip().startswith("--"):
                flags = re.match(r"--[^\s,]+(?:, --[^\s,]+)*", line.lstrip()).group(0).split(", ")
                suggestions.append((flags, set()))
    near = list(dict.fromkeys(f for flags, places in suggestions if not places or command in places for f in flags))
    words = f"unrecognized option{'s' if len(given) > 1 else ''} {' '.join(given)}"
    return words + (f"; did you mean {' or '.join(near)}?" if near else "")


def missing(report: str) -> str | None:
    """tyro's report of required options left out, as one phrase with what each is: ``needs --out PATH (the
    folder to write ...)``; and any unrecognized option given with them. None if the report is about something
    else."""
    text = [re.sub(r"^[│|] ?", "", line).rstrip().rstrip("│|").strip() for line in report.splitlines()]
    at = next((i for i, line in enumerate(text) if line.startswith("Missing from")), None)
    if at is None:
        return None
    needed: list[list[str]] = []  # each option's usage, then the lines of its help
    for line in text[at + 1:]:
        if not line or re.fullmatch(r"[-─=+]+", line) or line.startswith(("Unrecognized", "For full helptext")):
            break
        if re.match(r"(--\S+|[A-Z][A-Z0-9_.]*)(\s+[A-Z][A-Z0-9_.{},|]*)?$", line) and not (
                needed and needed[-1][1:] and not needed[-1][-1].endswith(")")):
            needed.append([line])
        elif needed:
            needed[-1].append(line)
    if not needed:
        return None
    said = []
    for usage, *helps in needed:
        words = re.sub(r"\s*\(required\)$", "", " ".join(helps)).rstrip(".")
        said.append(f"{usage}: {words[:1].lower() + words[1:]}" if words else usage)
    phrase = "needs " + "; and ".join(said)
    unknown = unrecognized(report, "")
    return phrase + (f"; {unknown}" if unknown else "")


def one_line_errors(parse: Callable[[], Any], command: str = "gaussdiff") -> Any:
    """``parse()`` (a tyro parse); tyro's boxed, many-line report of a bad option becomes one line and exit 2,
    pointing at ``command --help`` (the subcommand's own, whose options the line is about)."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parse()
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        needs = missing(captured.getvalue())
        if needs is not None:
            print_error(f"{command} {needs} (see {command} --help)")
            sys.exit(2)
        unknown = unrecognized(captured.getvalue(), command)
        if unknown is not None:
            print_error(f"{unknown} (see {command} --help)")
            sys.exit(2)
        lines = [re.sub(r"^[\s│╭╮╰╯─|]+|[\s│╭╮╰╯─|]+$", "", line) for line in captured.getvalue().splitlines()]
        # Without a terminal tyro draws no box, and its rules are plain dashes.
        lines = [line for line in lines if line and not line.startswith("For full helptext")
                 and not re.fullmatch(r"[-─=+]+", line)]
        usage = ""
        if "Argument helptext:" in lines:  # the option's usage and default: keep only its metavar
            at = lines.index("Argument helptext:")
            usage, lines = " ".join(lines[at + 1 : at + 2]), lines[:at]
        title, details = (lines[0].rstrip(".:"), " ".join(lines[1:])) if lines else ("bad arguments", "")
        message = details if details.lower().startswith(title.lower()) else f"{title}: {details}".rstrip(": ")
        parsing = re.match(r"(?:value error: )?error parsing (\S+): (.*)$", message, flags=re.IGNORECASE)
        if parsing:  # "Error parsing --batch-size: invalid literal for int() with base 10: 'abc'"
            flag, reason = parsing.groups()
            # What was given: the list tyro quotes ("from ['q']"), else the last quoted word.
            given = re.search(r"\[('[^']*'(?:, '[^']*')*)\]", reason) or re.search(r"'([^']*)'\s*$", reason)
            value = " ".join(re.findall(r"'([^']*)'", given.group(0))) if given else None
            metavar = usage[len(flag):].strip() if usage.startswith(flag + " ") else ""
            message = f"{flag}: " + (f"invalid value {value!r}" if value is not None else reason)
            message += f" (expected {metavar})" if metavar and value is not None else ""
        print_error(f"{message} (see {command} --help)")
        sys.exit(2)


def report_setup(setup: Setup, seconds: dict[Setup, float]) -> None:
    """Say in what sampling's network computes when it was measured or is not plain fp32 (a resumed run's
    record, a compile): the samples are that setup's."""
    if seconds or setup != Setup():
        print(f"gaussdiff: sampling network: {describe(setup, seconds)}", file=sys.stderr)


@contextlib.contextmanager
def keeping_parts(parts: Path | None, is_main: bool = True) -> Iterator[None]:
    """Ctrl-C while sampling: one line saying where the finished batches are (``parts``: the same command draws
    only the rest), and exit 130, instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        if is_main:
            kept = ""
            if parts is not None and any(parts.rglob("chunk-*.npz")):  # a cascade keeps stage-K/chunk-*
                kept = f"; the finished batches are kept in {parts}: the same command draws only the rest"
            print(f"gaussdiff: interrupted{kept}", file=sys.stderr)
        raise SystemExit(130) from None
