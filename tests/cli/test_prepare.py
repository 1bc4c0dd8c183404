"""`gaussdiff prepare`: which split it writes, its shard size's floor, and the images it leaves out, said."""

import dataclasses

import numpy as np
import torch
from PIL import Image

from conftest import expect_error
import gaussdiff.cli.prepare as prepare
from gaussdiff.cli import main
from gaussdiff.data.datasets import load_data


def test_a_built_in_dataset_is_prepared_from_its_training_split(tmp_path, capsys, monkeypatch):
    """train --data OUT trains on what prepare wrote: the training split, image for image, not the held-out one
    (each split cut to its first 40 images, to keep the test fast)."""
    real = prepare.load_data

    def first_40(*args, **kwargs):
        data = real(*args, **kwargs)
        captions = None if data.captions is None else data.captions[:40]
        return dataclasses.replace(data, images=data.images[:40], labels=data.labels[:40], captions=captions)

    monkeypatch.setattr(prepare, "load_data", first_40)
    main(["prepare", "digits", "--out", str(tmp_path / "shards")])
    shards, train, test = load_data(str(tmp_path / "shards")), load_data("digits"), load_data("digits", "test")
    assert not torch.equal(train.images[:40], test.images[:40])
    assert torch.equal(shards.images, train.images[:40]) and torch.equal(shards.labels, train.labels[:40])
    assert "wrote 40 images of 8x8 in 1 shard(s)" in capsys.readouterr().out


def test_a_shard_size_below_one_is_refused_in_one_line(tmp_path, capsys):
    expect_error(capsys, "prepare", "digits", "--out", tmp_path / "s", "--shard-size", "0",
                 match="--shard-size must be at least 1")
    assert not (tmp_path / "s").exists()


def test_each_image_left_out_is_named_on_its_own_line(tmp_path, capsys):
    """--skip-bad-images prepares the readable images and names each unreadable one (its path) as a warning."""
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"{i}.png")
    bad = root / "3.png"
    bad.write_bytes(b"not a png")
    capsys.readouterr()
    main(["prepare", str(root), "--out", str(tmp_path / "shards"), "--image-size", "8", "--skip-bad-images"])
    out = capsys.readouterr().out.splitlines()
    assert f"gaussdiff: warning: left out {bad} (unreadable)" in out
    assert len(load_data(str(tmp_path / "shards"))) == 3
