"""Shared helpers: a tiny run config so that end-to-end tests train in seconds."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaussdiff.training.config import RunConfig


def tiny_config(data: str = "digits", steps: int = 4, **train) -> RunConfig:
    cfg = RunConfig()
    cfg.data.data = data
    cfg.model.channels = 16
    cfg.model.channel_mult = (1, 2)
    cfg.model.num_res_blocks = 1
    cfg.model.attention_resolutions = (4,)
    cfg.diffusion.diffusion_steps = 50
    cfg.train.train_steps = steps
    cfg.train.batch_size = 8
    cfg.train.warmup = 2
    cfg.train.log_every = 2
    cfg.train.sample_every = steps
    cfg.train.checkpoint_every = steps
    cfg.train.preview_steps = 5
    cfg.train.device = "cpu"
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


TINY_FLAGS = [
    "--channels", "16", "--channel-mult", "1", "2", "--num-res-blocks", "1", "--attention-resolutions", "4",
    "--diffusion-steps", "50", "--batch-size", "8", "--warmup", "2", "--log-every", "2", "--preview-steps", "5",
    "--device", "cpu",
]


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
