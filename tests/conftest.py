"""Shared helpers: a tiny run config so that end-to-end tests train in seconds."""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import pytest
from PIL import Image

from gaussdiff.training.config import RunConfig


def override(config: Any, **changes: Any) -> Any:
    """A copy of a frozen (nested) config with ``changes`` keyed by dotted paths:
    ``override(c, **{"data.image_size": 8})``."""
    nested: dict[str, dict[str, Any]] = {}
    flat = {}
    for path, value in changes.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[head] = value
    for head, inner in nested.items():
        flat[head] = override(getattr(config, head), **inner)
    return dataclasses.replace(config, **flat)


@pytest.fixture
def no_tf32():
    """CUDA in true fp32 for the test: TF32 (on by default for cuDNN's convolutions) rounds their inputs to 10 bits
    of mantissa, ~1e-3 relative, so a comparison of two CUDA kernels (or CUDA with CPU) at fp32's tolerances would
    pass or fail by which kernels happen to be picked."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def tiny_config(data: str = "digits", steps: int = 4, **changes: Any) -> RunConfig:
    """A run of ``steps`` steps of a 16-channel U-Net on 50 diffusion steps; ``changes`` as for :func:`override`."""
    cfg = override(RunConfig(), **{
        "data.data": data, "model.channels": 16, "model.channel_mult": (1, 2), "model.num_res_blocks": 1,
        "model.attention_resolutions": (4,), "diffusion.diffusion_steps": 50, "train.train_steps": steps,
        "train.batch_size": 8, "train.optim.warmup": 2, "train.bookkeeping.log_every": 2,
        "train.bookkeeping.sample_every": steps,
        "train.bookkeeping.checkpoint_every": steps, "train.preview_steps": 5, "train.device": "cpu",
        "train.optim.precision": "fp32",  # not auto: a measured choice could differ between two runs compared
    })
    return override(cfg, **changes)


def expect_error(capsys, *args, match: str) -> str:
    """Run the CLI on ``args``: it must exit 2 with one line on stderr containing ``match`` (no traceback)."""
    from gaussdiff.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and match in err and "\n" not in err, err
    return err


TINY_FLAGS = [
    "--channels", "16", "--channel-mult", "1", "2", "--num-res-blocks", "1", "--attention-resolutions", "4",
    "--diffusion-steps", "50", "--batch-size", "8", "--warmup", "2", "--log-every", "2", "--preview-steps", "5",
    "--device", "cpu", "--precision", "fp32",
]


@pytest.fixture(autouse=True)
def conv_verdicts_stay_in_the_test(monkeypatch, tmp_path):
    """The CLI keeps --conv auto's verdicts per machine under ~/.cache: a test's go to its own directory, so that
    no test reads what another (or the user's runs) measured."""
    monkeypatch.setattr("gaussdiff.cli.train.DEFAULT_CONV_CACHE", tmp_path / "conv-cache")


@pytest.fixture(autouse=True)
def samples_do_not_depend_on_the_machine(monkeypatch):
    """The CLI's sampling measures which precision and layout are fastest here (nets.fast) unless calls are quick;
    tests compare samples bit for bit, so every test keeps the first candidate (fp32, default layout) unmeasured,
    however loaded the machine. Tests of the measuring itself set MEASURE_FROM back."""
    monkeypatch.setattr("gaussdiff.nets.fast.MEASURE_FROM", float("inf"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A made-up labelled folder: two classes of 12x10 RGB images (resized and cropped to the run's size)."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / label).mkdir(parents=True)
        for i in range(6):
            arr = np.clip(np.array(colour) + rng.integers(-20, 20, (10, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def conditional_trained(tmp_path_factory):
    """A class-conditional run with learned variance, its weights randomised (an untrained network's
    branches agree, which would hide what guidance does to them)."""
    from gaussdiff.training import Trainer, load_trained

    run = tmp_path_factory.mktemp("conditional") / "run"
    cfg = tiny_config(steps=1, **{"conditioning.class_conditional": True, "conditioning.p_uncond": 0.2,
                                  "diffusion.variance": "learned_range", "diffusion.loss": "hybrid"})
    Trainer(cfg, run, progress=False).run()
    trained = load_trained(run)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trained.model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return trained
