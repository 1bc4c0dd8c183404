"""Every bad input is one line on stderr and exit 2, and it comes before the work it would spoil: a bad option
trains nothing (no run directory), and an unwritable output costs no sampling."""

import json
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch

from conftest import TINY_FLAGS, expect_error
from gaussdiff.cli import main
from gaussdiff.cli.options import check_fits, missing, parse_class, unrecognized
from gaussdiff.data import load_data
from gaussdiff.errors import DataError, UsageError, WriteError
from gaussdiff.viz import plot_loss, read_metrics

PROC = Path("/proc")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run of one step (its preview drawn), to sample, show and measure."""
    run_dir = tmp_path_factory.mktemp("bad-inputs") / "run"
    main(["train", "--run-dir", str(run_dir), "--train-steps", "1", "--sample-every", "1", *TINY_FLAGS])
    return run_dir


@pytest.fixture
def no_sampling(monkeypatch):
    """Sampling, showing a trajectory or measuring the bound fails the test: the error must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the work ran before the bad input was refused")

    for target in ("gaussdiff.cli.sample.generate", "gaussdiff.cli.sample.generate_cascade",
                   "gaussdiff.cli.show.sample", "gaussdiff.cli.eval.evaluate_bpd", "gaussdiff.cli.eval.generate"):
        monkeypatch.setattr(target, refuse)


# -- train: each option out of its range, refused before anything is trained ------------------------------

TRAIN_CASES = [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--batch-size", "-1"], "--batch-size must be at least 1"),
    (["--log-every", "0"], "--log-every must be at least 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
    (["--sample-every", "0"], "--sample-every must be at least 1"),
    (["--diffusion-steps", "0"], "--diffusion-steps must be at least 1"),
    (["--diffusion-steps", "100000000"], "--diffusion-steps must lie in 1..16777216"),  # torch.multinomial's limit
    (["--variance", "learned", "--loss", "mse"], "--variance 'learned' is trained only by the bound"),
    (["--channels", "0"], "--channels must be at least 1"),
    (["--channels", "32", "--num-heads", "3"], "--num-heads 3 must divide"),
    (["--num-heads", "0"], "--num-heads must be at least 1"),
    (["--dropout", "1.5"], "--dropout must lie in [0, 1)"),
    (["--preview-steps", "5000", "--diffusion-steps", "20"], "--preview-steps must lie in 1..20"),
    (["--device", "banana"], "--device 'banana': not a device"),
    (["--train-steps", "0"], "--train-steps must be at least 1"),
    (["--train-steps", "-5"], "--train-steps must be at least 1"),
    (["--keep-checkpoints", "-1"], "--keep-checkpoints must be at least 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr", "-0.1"], "--lr must be > 0"),
    (["--warmup", "-1"], "--warmup must be at least 0"),
    (["--grad-clip", "0"], "--grad-clip must be > 0"),
    (["--ema-decay", "1"], "--ema-decay must lie in [0, 1)"),
    (["--ema-decay", "-0.5"], "--ema-decay must lie in [0, 1)"),
    (["--skip-nonfinite", "-1"], "--skip-nonfinite must be at least 0"),
    (["--dist-timeout", "0"], "--dist-timeout must be a number of seconds > 0"),
    (["--image-channels", "3"], "digits has 1 channel, not 3"),
    (["--batch-size", "abc"], "--batch-size: invalid value 'abc' (expected INT)"),
    (["--p-uncond", "nan"], "--p-uncond must lie in [0, 1), not nan"),
    (["--p-uncond", "0.1"], "--p-uncond drops the model's labels or captions: it needs --class-conditional or --text"),
    (["--data", "shapes", "--class-conditional"], "--class-conditional needs a labelled dataset (digits,"),
]


@pytest.mark.parametrize("flags, match", TRAIN_CASES, ids=[" ".join(f) for f, _ in TRAIN_CASES])
def test_a_bad_training_option_trains_nothing(flags, match, tmp_path, capsys):
    run_dir = tmp_path / "run"
    err = expect_error(capsys, "train", "--run-dir", run_dir, *TINY_FLAGS, *flags, match=match)
    assert "helptext" not in err and "Traceback" not in err
    assert not run_dir.exists()  # no config.json, no checkpoints: nothing was trained


@pytest.mark.parametrize("flags, match", [
    (["--disc-channels", "0"], "--disc-channels must be at least 1, not 0"),
    (["--disc-layers", "0"], "--disc-layers must be at least 1, not 0"),
    (["--disc-layers", "4"], "--disc-layers 4 halves the 8x8 images of digits 4 times, past one pixel: at most 3 fit"),
], ids=["disc-channels 0", "disc-layers 0", "disc-layers 4"])
def test_a_patch_discriminator_that_cannot_be_built_trains_nothing(flags, match, tmp_path, capsys):
    """With --gan-start the patch discriminator is built: a width of 0 or no layer was a RuntimeError or TypeError
    traceback, and more stride-2 layers than the image can be halved failed at the first adversarial step (a
    convolution's kernel larger than its input), after a run directory was begun."""
    run_dir = tmp_path / "ae"
    expect_error(capsys, "train-autoencoder", "--run-dir", run_dir, "--data", "digits", "--gan-start", "0",
                 "--channels", "8", "--train-steps", "2", "--batch-size", "8", "--device", "cpu", *flags, match=match)
    assert not run_dir.exists()


# A dry run loads no data, so it checks every range but those the data decides (the image's channels).
DRY_CASES = ([(f, m) for f, m in TRAIN_CASES if "digits has" not in m and "--data" not in f]
             + [(["--lr", "nan"], "--lr must be > 0")])


@pytest.mark.parametrize("flags, match", DRY_CASES, ids=[" ".join(f) for f, _ in DRY_CASES])
def test_a_dry_run_refuses_what_training_would(flags, match, capsys):
    expect_error(capsys, "train", "--dry-run", *TINY_FLAGS, *flags, match=match)


def test_a_dry_run_prints_the_config_it_would_train(capsys):
    main(["train", "--dry-run", *TINY_FLAGS, "--lr", "3e-4"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["optim"]["lr"] == 3e-4 and printed["diffusion"]["diffusion_steps"] == 50
    # sizes the data sets at start are null, as the data's own are, not the placeholders 32 and 3 (digits: 8, 1)
    model = printed["model"]
    assert model["image_size"] is model["in_channels"] is model["out_channels"] is printed["data"]["image_size"] is None
    main(["train", "--dry-run", *TINY_FLAGS, "--super-res", "4"])  # and a stage's low-resolution channels
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["low_res_channels"] is None and printed["model"]["image_size"] is None


@pytest.mark.parametrize("args, match", [
    (["tran", "--train-steps", "3"], "gaussdiff: no command 'tran'; did you mean train? (commands: train, "),
    (["show", "trajectroy", "RUN"], "gaussdiff show: no command 'trajectroy'; did you mean trajectory?"),
    (["frobnicate"], "gaussdiff: no command 'frobnicate' (commands: train, train-autoencoder, "),
    (["--seed", "3", "sample", "RUN"], "--seed: options follow the command (gaussdiff sample --seed ...; commands:"),
])
def test_a_misspelt_or_misplaced_command_word_is_one_line(args, match, capsys):
    """tyro answers these with its whole usage; the line names the nearest command instead."""
    expect_error(capsys, *args, match=match)


# An unknown option: what was given, and the near names of the subcommand it was given to. tyro suggests near
# names from every subcommand (eval's --steps for train's --steps), each with its help, many lines long.
UNKNOWN_CASES = [
    (["train", "--steps", "3"], "unrecognized options --steps 3; did you mean --diffusion-steps or --preview-steps or "
                                "--train-steps? (see gaussdiff train --help)"),
    (["sample", "--sampel", "ddim"], "unrecognized options --sampel ddim; did you mean --sampler? "
                                     "(see gaussdiff sample --help)"),
    (["train", "--batchsize", "3"], "did you mean --batch-size?"),
    (["show", "trajectory", "RUN", "--stepz", "3"], "did you mean --steps? (see gaussdiff show trajectory --help)"),
    (["eval", "--nothing-like-it"], "unrecognized option --nothing-like-it (see gaussdiff eval --help)"),
]


@pytest.mark.parametrize("args, match", UNKNOWN_CASES, ids=[" ".join(a) for a, _ in UNKNOWN_CASES])
def test_an_unknown_option_names_the_commands_own_near_options(args, match, capsys):
    err = expect_error(capsys, *args, match=match)
    assert "--timesteps" not in err and "helptext" not in err and "in gaussdiff" not in err


class Writes:
    """A stderr that keeps each write apart, as the terminal that torchrun's ranks share receives them."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("args", [["sample", "no-such-run"], ["sample", "--bogus", "1"], ["train", "--lr", "x"]])
def test_an_error_line_reaches_stderr_in_one_write(args, monkeypatch):
    """Under torchrun every rank writes to the same stderr: a line written as text then newline (print's two
    writes) lets another rank's line in between, and two ranks' errors came out glued on one line. The whole
    line, newline included, must be one write."""
    stderr = Writes()
    monkeypatch.setattr(sys, "stderr", stderr)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    errors = [w for w in stderr.writes if "gaussdiff: error:" in w]
    assert exit_info.value.code == 2 and len(errors) == 1, stderr.writes
    assert errors[0].startswith("gaussdiff: error: ") and errors[0].endswith("\n") and errors[0].count("\n") == 1


@pytest.mark.parametrize("command", [["train"], ["train-autoencoder"], ["train-classifier"], ["show", "forward"],
                                     ["sample", "RUN"], ["eval", "RUN"], ["tune", "RUN"]], ids=" ".join)
def test_a_seed_past_64_bits_is_one_line_before_the_work(command, capsys):
    """torch's generators take 64-bit seeds: a larger --seed is refused when parsed, not by an overflow in
    the first manual_seed."""
    expect_error(capsys, *command, "--seed", str(2**64), match=f"--seed {2**64} does not fit in 64 bits")


def test_show_forward_refuses_empty_lists_and_other_files_and_scales_its_steps(tmp_path, capsys):
    """Empty --t or --index, and an --out that is not a PNG, are one line; without --t a schedule of T steps
    shows the default steps' fractions of T (a 100-step schedule: t = 0, 5, ..., 99, not 50..999 refused)."""
    expect_error(capsys, "show", "forward", "--t", match="--t needs one or more values")
    expect_error(capsys, "show", "forward", "--index", match="--index needs one or more values")
    expect_error(capsys, "show", "forward", "--out", tmp_path / "f.npz", match="expected a .png file")
    expect_error(capsys, "show", "trajectory", "RUN", "--out", tmp_path / "t.txt", match="expected a .png file")
    expect_error(capsys, "show", "trajectory", "RUN", "--class", "all", match="--class all is for gaussdiff sample")
    main(["show", "forward", "--diffusion-steps", "100", "--out", str(tmp_path / "f.png")])
    assert (tmp_path / "f.png").exists()
    expect_error(capsys, "show", "forward", "--diffusion-steps", "100", "--t", "100", match="--t 100 is outside 0..99")


def test_unknown_options_read_from_a_report_without_a_box():
    """Without a terminal tyro may draw no box: the same suggestions come from the indentation alone."""
    report = """Unrecognized options
Unrecognized or misplaced options:
  --stepz (applied to gaussdiff eval)
  4 (applied to gaussdiff eval)

Arguments are applied to the directly preceding subcommand, so ordering can matter.
--------------------------------------------------------------------------------
Perhaps you meant:
    --steps {None}|INT
        --bpd on a respaced schedule. (default: None)
        in gaussdiff eval --help
    --train-steps INT
        Optimisation steps (>= 1). (default: 2000)
        in gaussdiff train --help
--------------------------------------------------------------------------------
For full helptext, run gaussdiff --help
"""
    assert unrecognized(report, "gaussdiff eval") == "unrecognized options --stepz 4; did you mean --steps?"
    assert unrecognized(report, "gaussdiff sample") == "unrecognized options --stepz 4"
    assert unrecognized("Missing argument\nMissing value for argument 'data'.", "gaussdiff prepare") is None
    assert missing(report) is None
    # The same for required options: two, each with its help over two lines, and an unknown one given with them.
    report = """Required options
Missing from gaussdiff export:
    CHECKPOINT
        A run directory (its newest checkpoint) or a checkpoint
        directory. (required)
    --diffusers PATH
        The folder to write. (required)
--------------------------------------------------------------------------------
Unrecognized options:
    --bogus
    1
--------------------------------------------------------------------------------
For full helptext, run:
    gaussdiff export --help
"""
    assert missing(report) == ("needs CHECKPOINT: a run directory (its newest checkpoint) or a checkpoint directory; "
                               "and --diffusers PATH: the folder to write; unrecognized options --bogus 1")


@pytest.mark.parametrize("args, match", [
    (["prepare", "digits"], "gaussdiff prepare needs --out PATH: the folder to write the shards and index.json in"),
    (["export"], "gaussdiff export needs CHECKPOINT: a run directory (its newest checkpoint) or a checkpoint "
                 "directory; and --diffusers PATH: the folder to write"),
    (["show", "trajectory"], "gaussdiff show trajectory needs CHECKPOINT: a run directory"),  # not WHAT.CHECKPOINT
    (["prepare", "digits", "--bogus", "1"], "needs --out PATH: the folder to write the shards and index.json in (it "
                                            "must not exist, or be empty); unrecognized options --bogus 1"),
])
def test_a_missing_required_option_is_named_with_its_help(args, match, capsys):
    """tyro's boxed report becomes one line naming each missing option and what it is, and keeps an unknown option
    given beside them (which the flattened box lost)."""
    expect_error(capsys, *args, match=match)


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_an_optional_run_reads_as_one_in_the_usage(command, capsys):
    """sample and eval take a run unless --cascade (or --samples) replaces it: the usage says [CHECKPOINT], not
    tyro's rendering of Path | None, [{None}|PATH]."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert capsys.readouterr().out.splitlines()[0].endswith(f"gaussdiff {command} [-h] [{command.upper()} OPTIONS] "
                                                            "[CHECKPOINT]")


def test_the_help_states_the_ranges(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("1..--diffusion-steps", "(>= 0; 0: all)", "in [0, 1)"):
        assert text in out, text


# -- data that a run cannot train on or draw ---------------------------------------------------------------


def npz(tmp_path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, images, *([] if labels is None else [labels]))
    return path


def grey(n: int = 16, h: int = 8, w: int = 8, c: int = 1) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, c), dtype=np.uint8)


DATA_CASES = {
    "2 channels": (grey(c=2), None, "images have 2 channels; expected 1 (grey) or 3 (RGB)"),
    "RGBA": (grey(c=4), None, "drop the alpha channel"),
    "5 channels": (grey(c=5), None, "images have 5 channels"),
    "channel-first": (grey(32, 3, 8, 8), None, "looks channel-first [N, C, H, W]"),
    "no images": (grey(0), None, "arr_0 holds no images"),
    "not square": (grey(h=8, w=6), None, "images are 8x6; gaussdiff trains on square images"),
    "2-D labels": (grey(), np.zeros((16, 2), np.int64), "arr_1 (labels) must be 1-D"),
    "too few labels": (grey(), np.zeros(15, np.int64), "15 labels (arr_1) for 16 images"),
    "fractional labels": (grey(), np.full(16, 0.5), "must hold whole numbers"),
    "NaN labels": (grey(), np.full(16, np.nan), "must hold whole numbers"),
    "negative labels": (grey(), np.arange(16) - 1, "must be class indices >= 0, got -1"),
    "string labels": (grey(), np.array(["a"] * 16), "must hold class indices (integers)"),
    # 10**12 once asked for 23 GB; the bound itself is refused, so that a regression fails here cheaply
    "a label past the bound": (grey(), np.full(16, 100_000), "at most 100000 classes"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_npz_data_trains_nothing(case, tmp_path, capsys):
    images, labels, match = DATA_CASES[case]
    data = npz(tmp_path, images, labels)
    expect_error(capsys, "train", "--data", data, "--run-dir", tmp_path / "run", *TINY_FLAGS, match=match)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, match", [
    (b"", "not a .npz archive"),
    (b"\x80\x04garbage that np.load would unpickle", "not a .npz archive"),
    (b"PK\x03\x04 a zip cut short", "cannot read .npz (BadZipFile"),
])
def test_a_file_that_is_not_a_whole_npz_is_one_line(content, match, tmp_path, capsys):
    """Empty, foreign and truncated files: np.load raises EOFError, a pickle error or zipfile.BadZipFile."""
    (tmp_path / "x.npz").write_bytes(content)
    expect_error(capsys, "train", "--data", tmp_path / "x.npz", "--run-dir", tmp_path / "run", *TINY_FLAGS,
                 match=match)
    expect_error(capsys, "eval", "--samples", tmp_path / "x.npz", "--data", "digits", match=match)


def test_samples_with_a_class_the_data_lacks_are_refused(tmp_path, capsys):
    """eval --samples scores arr_1 against the data's classifier, whose classes are 0..9 for digits: a sample of
    class 10 cannot be scored (it counted as wrong, silently), so the file is refused before any work."""
    labels = np.arange(16) % 11
    expect_error(capsys, "eval", "--samples", npz(tmp_path, grey(), labels), "--data", "digits",
                 match="arr_1 holds class 10 at index 10; digits has 10 classes")


def test_an_image_too_large_to_decode_is_a_bad_image(tmp_path, capsys, monkeypatch):
    """Pillow refuses images beyond its decompression-bomb limit (here lowered, so that the file stays small):
    listed with the other bad images, and skipped by --skip-bad-images."""
    from PIL import Image

    for name, size in (("a", 8), ("b", 8), ("huge", 64)):
        Image.new("L", (size, size), 128).save(tmp_path / f"{name}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 = 4096 > 2 x 1000: an error, not a warning
    expect_error(capsys, "train", "--data", tmp_path, "--image-size", "8", "--run-dir", tmp_path / "run",
                 *TINY_FLAGS, match="DecompressionBombError")
    assert len(load_data(str(tmp_path), image_size=8, skip_bad=True)) == 2


def test_whole_float_labels_are_class_indices(tmp_path):
    data = load_data(str(npz(tmp_path, grey(), np.arange(16) % 4 * 1.0)))
    assert data.labels.dtype.is_floating_point is False and data.labels.tolist() == [i % 4 for i in range(16)]
    assert data.num_classes == 4


def test_a_folder_takes_only_grey_or_rgb(image_folder, tmp_path, capsys):
    expect_error(capsys, "train", "--data", image_folder, "--image-channels", "2", "--run-dir", tmp_path / "run",
                 *TINY_FLAGS, match="--image-channels must be 1 (grey) or 3 (RGB), not 2")
    with pytest.raises(DataError, match="--image-size 0: expected 1..1024"):
        load_data(str(image_folder), image_size=0)


# -- sample, show, eval: bad options and unwritable outputs, before any sampling ---------------------------


def sample_cases(tmp_path: Path, run: Path) -> list[tuple[list, str]]:
    a_file = run / "config.json"
    unlabelled = npz(tmp_path, grey())  # 8x8 grey images, as the run's, without labels
    cases = [
        (["sample", run, "--batch-size", "0"], "--batch-size must be at least 1"),
        (["sample", run, "--batch-size", "-1"], "--batch-size must be at least 1"),
        (["sample", run, "--n", "0"], "--n must be at least 1"),
        (["sample", run, "--device", "banana"], "not a device"),
        (["sample", run, "--steps", "5", "--out", a_file / "x.png"], f"{a_file} is a file, not a directory"),
        (["sample", run, "--steps", "5", "--out", tmp_path / "s.png", a_file / "deeper" / "x.npz"],
         "is a file, not a directory"),
        (["sample", run, "--steps", "5", "--out", tmp_path], "expected a .png or .npz file"),
        (["show", "trajectory", run, "--n", "0"], "--n must be at least 1"),
        (["show", "trajectory", run, "--n", "-1"], "--n must be at least 1"),
        (["show", "trajectory", run, "--steps", "5", "--out", a_file / "t.png"], "is a file, not a directory"),
        (["show", "forward", "--run", run, "--t", "0", "10", "--out", a_file / "f.png"], "is a file, not a directory"),
        (["show", "forward", "--diffusion-steps", "0"], "--diffusion-steps must be at least 1"),
        (["show", "forward", "--run", run, "--schedule", "linear"], "go without --run"),  # not silently ignored
        (["eval", run, "--bpd", "--n", "0"], "--n must be at least 1"),
        (["eval", run, "--bpd", "--n", "-3"], "--n must be at least 1"),
        (["eval", run, "--bpd", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["eval", run, "--bpd", "--n", "4", "--steps", "5", "--out-dir", a_file / "e"], "is a file, not a directory"),
        (["sample", run, "--batch-size", "abc"], "--batch-size: invalid value 'abc' (expected INT) "
                                                 "(see gaussdiff sample "
                                                 "--help)"),
        (["show", "forward", "--t", "x"], "(see gaussdiff show forward --help)"),  # the help of what was mistyped
        (["tune", run, "--evals", "5"], "--evals must be at least 8"),
        (["sample", run, "--guidance", "nan"], "--guidance must be a finite number >= 0, got nan"),
        (["sample", run, "--classifier-scale", "inf"], "--classifier-scale must be a finite number >= 0"),
        # what would change nothing is refused, not silently ignored
        (["sample", run, "--classifier-scale", "3"], "steer classifier guidance: pass --classifier"),
        (["eval", run, "--fid", "--n", "4", "--classifier-mode", "mean"],
         "steer classifier guidance: pass --classifier"),
        (["eval", run, "--fid", "--n", "4", "--cond-aug-level", "0.2"], "goes with --cascade or --super-res-test"),
        (["eval", run, "--fid", "--n", "1"], "--n must be at least 4"),  # precision/recall's 3rd neighbours
        # a respacing of the run's 50 steps (was a ValueError traceback from the sampling, after loading the data)
        (["eval", run, "--fid", "--n", "4", "--steps", "0"], "--steps must lie in 1..50"),
        (["eval", run, "--fid", "--n", "4", "--steps", "51"], "--steps must lie in 1..50"),
        # the domain classifier's features need labels: refused before the samples are drawn, not after
        (["eval", run, "--fid", "--n", "4", "--data", unlabelled], "the domain classifier needs a labelled dataset"),
        # more samples than memory holds: refused at once (it ran for ever without a word)
        (["sample", run, "--n", "99999999999999", "--out", tmp_path / "huge.npz"], "--n 99999999999999: 99999999999999 "
                                                                                     "images of 1x8x8 take"),
        (["eval", run, "--fid", "--n", "99999999999999"], "GiB of memory: ask for fewer"),
        (["train-autoencoder", "--latent-channels", "0"], "--latent-channels must be at least 1"),
        (["train-autoencoder", "--kl-weight", "-1"], "--kl-weight must be a finite number >= 0"),
        (["tune", run, "--nfe"], "--nfe needs one or more budgets"),
        (["train-classifier", "--train-steps", "0"], "--classifier-steps (--train-steps) must be at least 1"),
        # an EMA these trainers would average every step and never save (nor use): refused
        (["train-classifier", "--run-dir", tmp_path / "clf", "--ema-decay", "0.999"],
         "--ema-decay: gaussdiff train-classifier keeps no EMA"),
        (["train-autoencoder", "--run-dir", tmp_path / "ae", "--ema-decay", "0.999"],
         "--ema-decay: gaussdiff train-autoencoder keeps no EMA"),
        # the encoder's shape, as train checks the U-Net's (both were a RuntimeError traceback in the first step)
        (["train-classifier", "--run-dir", tmp_path / "clf", "--channels", "0"], "--channels must be at least 1"),
        (["train-classifier", "--run-dir", tmp_path / "clf", "--channels", "8", "--num-heads", "3"],
         "--num-heads 3 must divide the width of every attention layer"),
        (["sample", run, "--eta", "nan"], "--eta must be a finite number >= 0, got nan"),
        (["sample", run, "--eta", "-1"], "--eta must be a finite number >= 0, got -1"),
        (["sample", run, "--sampler", "unipc", "--eta", "0.5"], "unipc takes none"),  # --eta 0 is every sampler's
        (["eval", run, "--fid", "--sampler", "ddpm", "--eta", "1"], "ddpm takes none"),
        (["show", "trajectory", run, "--eta", "inf"], "--eta must be a finite number >= 0, got inf"),
        (["sample", run, "--out"], "--out needs one or more of FILE.png, FILE.npz"),
        (["sample", run, "--steps"], "--steps needs one or more values"),  # was an IndexError from stage_steps
        (["sample", run, "--timesteps", ",,,"], "names no time"),
    ]
    if PROC.is_dir():  # a place no one can write in, root included
        cases += [(["sample", run, "--steps", "5", "--out", PROC / "gaussdiff-test" / "x.png"], "cannot write in"),
                  (["show", "trajectory", run, "--steps", "5", "--out", PROC / "t.png"], "cannot write in")]
    return cases


def test_bad_sampling_and_measuring_inputs_fail_before_the_work(run, tmp_path, capsys, no_sampling):
    for args, match in sample_cases(tmp_path, run):
        err = expect_error(capsys, *args, match=match)
        assert "helptext" not in err
    assert not (tmp_path / "s.png").exists()  # not even the writable one of two --out files was written
    assert not (run / "eval").exists() and not (tmp_path / "clf").exists()


def test_a_new_run_never_starts_in_another_runs_directory(run, tmp_path, capsys):
    """train-classifier would overwrite a diffusion run's config.json, and train a classifier's."""
    expect_error(capsys, "train-classifier", "--run-dir", run, match="already holds a run: pass another --run-dir")
    (tmp_path / "clf").mkdir()
    (tmp_path / "clf" / "classifier.safetensors").write_bytes(b"")
    expect_error(capsys, "train", "--run-dir", tmp_path / "clf", *TINY_FLAGS, match="already holds a classifier")


def test_a_new_run_never_starts_in_a_checkpoint_or_a_diffusers_folder(run, tmp_path, capsys):
    """A checkpoint directory (what sample takes as CHECKPOINT) holds its own config.json: a new run of any trainer
    started there wrote its config over it, and the checkpoint no longer matched its manifest. A diffusers folder's
    UNet2DModel config.json likewise."""
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    diffusers_unet = tmp_path / "unet"
    diffusers_unet.mkdir()
    (diffusers_unet / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    saved = {p: p.read_bytes() for p in (checkpoint / "config.json", diffusers_unet / "config.json")}
    small = ["--train-steps", "1", "--batch-size", "8", "--device", "cpu"]  # short, should the refusal be missed
    for command in (["train", *TINY_FLAGS, *small], ["train-classifier", "--channels", "8", *small],
                    ["train-autoencoder", "--data", "digits", "--channels", "8", *small]):
        expect_error(capsys, *command, "--run-dir", checkpoint, match=f"{checkpoint} is a checkpoint of a run")
        expect_error(capsys, *command, "--run-dir", diffusers_unet, match="holds a diffusers model")
    assert {p: p.read_bytes() for p in saved} == saved
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(["config.json", "ema.safetensors", "manifest.json",
                                                                  "model.safetensors", "training.pt"])


def test_the_writability_checks_leave_nothing_behind(tmp_path):
    from gaussdiff.cli.options import check_writable, check_writable_dir

    check_writable(tmp_path / "a" / "b" / "x.png")
    assert list(tmp_path.iterdir()) == []  # the directories made for the check are gone again
    check_writable_dir(tmp_path / "run", keep=True)
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and list((tmp_path / "run").iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match="--run-dir .*file: a file, not a directory"):
        check_writable_dir(tmp_path / "file")
    with pytest.raises(WriteError, match="is a file, not a directory"):
        check_writable_dir(tmp_path / "file" / "run")
    with pytest.raises(WriteError, match="a directory, not a file"):
        check_writable(tmp_path / "run")


def test_a_run_dir_in_a_file_is_one_line_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    expect_error(capsys, "train", "--run-dir", tmp_path / "file" / "run", *TINY_FLAGS,
                 match="is a file, not a directory")
    expect_error(capsys, "train", "--run-dir", tmp_path / "file", *TINY_FLAGS, match="a file, not a directory")


# -- metrics.jsonl cut short by a kill ---------------------------------------------------------------------


def test_a_truncated_last_row_of_metrics_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 1.0, "grad_norm": null}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert plot_loss(path, tmp_path / "loss.png") is not None
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n{"step": 3, "loss": 0.5}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not valid JSON"):
        read_metrics(path)


def test_the_loss_plot_leaves_out_rows_without_a_finite_loss(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(f'{{"step": {s}, "loss": {v}, "loss_by_t": [1.0, {v}]}}\n'
                            for s, v in ((1, "1.0"), (2, "null"), (3, "0.5"), (4, "0.4"), (5, "null"), (6, "0.3"))))
    assert plot_loss(path, tmp_path / "loss.png").exists()


def test_every_option_of_every_subcommand_has_a_help_line():
    """Each option's --help says what it does (not only its default), read from the configs' docstrings."""
    import re

    import tyro

    from gaussdiff.cli.main import COMMANDS

    bare = []

    def walk(parser, name):
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                text = re.sub(r"\((default|fixed)[^)]*\)|\(required\)", "", str(action.help or "")).strip()
                if not text:
                    bare.append(f"{name} {action.option_strings[0]}")
            for sub_name, sub in (action.choices.items() if isinstance(action.choices, dict) else ()):
                walk(sub, f"{name} {sub_name}")

    for name, command in COMMANDS.items():
        walk(tyro.extras.get_parser(command), name)
    assert not bare, bare


def test_ctrl_c_is_one_line_and_exit_130(run, tmp_path, capsys, monkeypatch):
    """Ctrl-C while sampling says where the finished batches are kept; anywhere else (loading data, say) a
    plain line: never a traceback."""
    import sys

    cli_main, cli_sample = sys.modules["gaussdiff.cli.main"], sys.modules["gaussdiff.cli.sample"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def interrupted_after_a_batch(*args, parts, **kwargs):
        (parts / "stage-0").mkdir(parents=True)  # where a cascade's first stage keeps its batches
        (parts / "stage-0" / "chunk-000000.npz").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_sample, "generate_cascade", interrupted_after_a_batch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(run), "--n", "4", "--batch-size", "2", "--steps", "2", "--out", str(tmp_path / "s.png")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 130 and "\n" not in err
    assert err == f"gaussdiff: interrupted; the finished batches are kept in {tmp_path / 's.png.parts'}: the same " \
                  "command draws only the rest"
    monkeypatch.setattr(cli_main, "parse", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 130 and capsys.readouterr().err.strip() == "gaussdiff: interrupted"


def test_resume_help_names_every_option_a_resume_may_change():
    """--resume's help is the user's list of what a resume may change; it must name every option that
    CHANGEABLE lets through (a whole section: each of its fields), so the two cannot drift apart."""
    import dataclasses

    import tyro

    from gaussdiff.cli.main import COMMANDS
    from gaussdiff.cli.train import CHANGEABLE, option
    from gaussdiff.training.config import RunConfig

    (resume,) = [a for a in tyro.extras.get_parser(COMMANDS["train"])._actions if "--resume" in a.option_strings]
    help_text = " ".join(str(resume.help).split())
    names = []
    for path in CHANGEABLE:
        if path.endswith("."):  # a whole section: find its dataclass by walking RunConfig's fields
            section = RunConfig
            for part in path.rstrip(".").split("."):
                section = {f.name: f for f in dataclasses.fields(section)}[part].default_factory
            names += [option(f.name) for f in dataclasses.fields(section)]
        else:
            names.append(option(path))
    missing = [n for n in names if n not in help_text]
    assert not missing, missing


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "-1", " 1", "1.0", "10"])
def test_a_class_that_is_not_a_class_index_is_one_line(value):
    """--class of sample and show trajectory: a superscript or circled digit passed str.isdigit and reached int(),
    a ValueError traceback; every value but a decimal index in range is a UsageError."""
    with pytest.raises(UsageError, match="--class must be 'all' or a class in 0..9"):
        parse_class(value, 10, 4)
    assert parse_class("\uff13", 10, 2)[0].tolist() == [3, 3]  # a full-width 3 is a decimal digit: int() reads it


def test_check_fits_counts_the_gathered_samples_twice():
    """n uint8 images of (C, H, W) are held twice as they are gathered (the chunks and their join): 2 n C H W bytes
    must fit in the memory given; a machine that does not say its memory refuses nothing."""
    check_fits("--n", 8, (3, 4, 4), memory=2 * 8 * 48)  # exactly fits
    with pytest.raises(UsageError, match="--n 9: 9 images of 3x4x4 take 0.0 GiB"):
        check_fits("--n", 9, (3, 4, 4), memory=2 * 8 * 48)
    with patch("gaussdiff.cli.options.memory_bytes", return_value=None):
        check_fits("--n", 10**15, (3, 32, 32))


def test_an_allocation_that_fails_is_one_line(run, tmp_path, capsys):
    """show trajectory and tune hold all --n images at once: more than memory holds was the allocator's traceback,
    now one line naming the size (exit 1); an error that is not about memory still raises."""
    from gaussdiff.cli.main import out_of_memory

    for command in (["show", "trajectory", run, "--n", "99999999999999", "--steps", "2", "--out", tmp_path / "t.png"],
                    ["tune", run, "--n", "99999999999999", "--nfe", "5", "--reference-nfe", "10"]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in command])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 1 and "\n" not in err, err
        assert err.startswith("gaussdiff: error: out of this machine's memory (tried to allocate ") and "GiB" in err
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")).startswith(
        "out of GPU memory: ask for fewer")
    assert out_of_memory(MemoryError()) is not None and out_of_memory(RuntimeError("shape mismatch")) is None


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`gaussdiff sample --help | head -2`: the pipe's reader is gone when the help is written (here: before the
    command starts), which was a BrokenPipeError traceback; a pipe's writer stops quietly with 128 + SIGPIPE."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-m", "gaussdiff", "sample", "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # the reader leaves at once
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and err == "", err
