"""Prepared shards hold what the folder held: the same images (decoded once, PNG: lossless), labels and captions,
so a run on the shards takes exactly the steps of a run on the folder; the shards are plain tar files."""

import json
import tarfile

import numpy as np
import torch
from PIL import Image

from conftest import expect_error, tiny_config
from gaussdiff.cli import main
from gaussdiff.data.datasets import load_data
from gaussdiff.data.shards import ShardImages
from gaussdiff.training.trainer import Trainer


def captioned_folder(root):
    rng = np.random.default_rng(1)
    rows = []
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(7):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
            rows.append({"file_name": f"{label}/{i}.png", "text": f"a {label} number {i}"})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_prepare_then_train_round_trips_images_labels_and_captions(tmp_path, capsys):
    folder = captioned_folder(tmp_path / "images")
    main(["prepare", str(folder), "--out", str(tmp_path / "shards"), "--image-size", "8", "--shard-size", "5"])
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == [f"shard-00000{i}.tar" for i in range(3)]
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar") as tar:  # readable without gaussdiff
        assert tar.getnames()[:2] == ["000000000.png", "000000000.json"]
    original = load_data(str(folder), image_size=8)
    shards = load_data(str(tmp_path / "shards"), stream="stream")
    assert isinstance(shards.images, ShardImages)
    assert torch.equal(shards.images[torch.arange(14)], original.images)
    assert torch.equal(shards.labels, original.labels) and shards.captions == original.captions
    assert shards.class_names == original.class_names
    cfg = lambda data: tiny_config(steps=4, **{"data.data": data, "data.workers": 0, "data.image_size": 8,  # noqa: E731
                                               "conditioning.class_conditional": True})
    a = Trainer(cfg(str(folder)), tmp_path / "a", progress=False).run()
    b = Trainer(cfg(str(tmp_path / "shards")), tmp_path / "b", progress=False).run()
    assert a.losses == b.losses
    expect_error(capsys, "prepare", folder, "--out", tmp_path / "shards", match="not an empty folder")
    expect_error(capsys, "train", "--data", tmp_path / "shards", "--image-size", "16", "--run-dir", tmp_path / "c",
                 match="prepared at 8x8, not 16")


def test_a_damaged_index_is_one_line_naming_what_is_wrong(tmp_path, capsys):
    """index.json is read as data, not trusted: labels cut short, a negative size, a shard named outside the
    folder, or an index that is not JSON at all are each refused before anything decodes (the last used to be
    taken for an image of a folder)."""
    folder = captioned_folder(tmp_path / "images")
    main(["prepare", str(folder), "--out", str(tmp_path / "shards"), "--image-size", "8", "--shard-size", "5"])
    index_path = tmp_path / "shards" / "index.json"
    good = json.loads(index_path.read_text())
    damages = {
        "labels must be a list of 14": {**good, "labels": good["labels"][:3]},
        "size must be >= 1": {**good, "size": -3},
        "count must be a whole number": {**good, "count": "many"},
        "shards must name files in its folder": {**good, "shards": [{"name": "../../x", "count": 14}]},
        "labels must be class indices": {**good, "labels": [5] * 14},
    }
    for match, index in damages.items():
        index_path.write_text(json.dumps(index))
        for stream in ("memory", "stream"):
            expect_error(capsys, "train", "--data", tmp_path / "shards", "--stream", stream, "--run-dir",
                         tmp_path / "run", match=match)
    index_path.write_text("{not json")
    expect_error(capsys, "train", "--data", tmp_path / "shards", "--run-dir", tmp_path / "run",
                 match="unreadable shard index")
    assert not (tmp_path / "run").exists()


def test_grey_images_round_trip_and_each_shard_counts_its_own(tmp_path):
    """A 1-channel set comes back 1-channel and exact, and the index gives each shard its own count (13 images in
    shards of 5: 5, 5, 3), as a WebDataset reader would use them."""
    from gaussdiff.data.shards import write_shards

    images = torch.randint(0, 256, (13, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    index = write_shards(images, None, None, None, tmp_path / "shards", shard_size=5)
    assert index["channels"] == 1 and [s["count"] for s in index["shards"]] == [5, 5, 3]
    back = load_data(str(tmp_path / "shards"), stream="stream")
    assert back.images.shape == (13, 1, 8, 8) and torch.equal(back.images[torch.arange(13)], images)
