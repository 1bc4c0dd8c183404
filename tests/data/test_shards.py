"""Prepared shards hold what the folder held: the same images (decoded once, PNG: lossless), labels and captions,
so a run on the shards takes exactly the steps of a run on the folder; the shards are plain tar files."""

import json
import tarfile
from io import BytesIO

import numpy as np
import pytest
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
    expect_error(capsys, "prepare", folder, "--out", folder / "shards", match="inside the folder it prepares")
    assert not (folder / "shards").exists()
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


def small_shards(root, n=13, shard_size=5, progress=None):
    """``n`` random 3-channel 4x4 images with labels of 3 classes and captions, written in shards of ``shard_size``."""
    from gaussdiff.data.shards import write_shards

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    captions = [f"picture {i}" for i in range(n)]
    index = write_shards(images, labels, ["a", "b", "c"], captions, root, shard_size=shard_size, progress=progress)
    return images, labels, captions, index


def test_each_tar_member_holds_its_own_image_label_and_caption(tmp_path):
    """What a WebDataset reader sees, without the index: in every shard, KEY.png is image KEY and KEY.json its
    label and caption (the images of later shards too, whose keys do not start at 0). The progress callback is told
    each shard's own count, which sum to N."""
    told = []
    images, labels, captions, _ = small_shards(tmp_path, progress=told.append)
    assert told == [5, 5, 3]
    seen = 0
    for tar_path in sorted(tmp_path.glob("shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                key, suffix = member.name.split(".")
                i, data = int(key), tar.extractfile(member).read()
                if suffix == "json":
                    assert json.loads(data) == {"label": int(labels[i]), "text": captions[i]}
                else:
                    pixels = np.asarray(Image.open(BytesIO(data)))
                    assert np.array_equal(pixels, images[i].permute(1, 2, 0).numpy())
                    seen += 1
    assert seen == 13


def test_shard_images_index_as_the_tensor_they_hold(tmp_path):
    """ShardImages is indexed like the ``uint8 [N, C, S, S]`` tensor it was written from: an int gives one
    ``[C, S, S]`` image (negative counts from the end), a slice and an index tensor give a batch, and no indices
    an empty batch of the right shape."""
    from gaussdiff.data.shards import read_index
    from gaussdiff.errors import DataError

    images, *_ = small_shards(tmp_path)
    lazy = ShardImages(tmp_path, read_index(tmp_path))
    assert lazy.shape == (13, 3, 4, 4)
    assert torch.equal(lazy[3], images[3]) and torch.equal(lazy[-1], images[-1])
    assert torch.equal(lazy[2:11:3], images[2:11:3]) and torch.equal(lazy[-3:], images[-3:])
    idx = torch.tensor([12, 0, 7, 7])
    assert torch.equal(lazy[idx], images[idx])
    empty = lazy[torch.tensor([], dtype=torch.long)]
    assert empty.shape == (0, 3, 4, 4) and empty.dtype == torch.uint8
    with pytest.raises(DataError, match="take no crop places"):  # stored square and cut once
        lazy.read(idx, at=torch.full((4, 2), 0.5))


def test_a_folder_is_taken_for_shards_by_its_index_format_or_its_shard_files(tmp_path):
    """is_shards: an index.json of gaussdiff's format marks shards even with no shard file yet (an empty set); an
    index.json of something else, alone, does not (an image folder may hold one); beside shard files any index.json
    does, so that a damaged one is reported by read_index instead of the folder being read as images."""
    from gaussdiff.data.shards import FORMAT, is_shards

    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "index.json").write_text(json.dumps({"format": FORMAT, "count": 0}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "index.json").write_text(json.dumps({"format": "someone-else", "pages": 3}))
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "index.json").write_text("{not json")
    (tmp_path / "damaged" / "shard-000000.tar").write_bytes(b"")
    assert is_shards(tmp_path / "ours") and not is_shards(tmp_path / "other") and is_shards(tmp_path / "damaged")
    assert not is_shards(tmp_path)  # no index at all


def test_every_field_of_the_index_is_checked_at_its_bounds(tmp_path):
    """index_problem refuses each field just past what write_shards can write (a label equal to the number of
    classes, a shard number equal to the number of shards, size 0, 2 channels, ...) and accepts the index written,
    so a damaged index fails on load with its reason instead of at a far step or by reading wrong bytes. A shard
    file gone is named by read_index."""
    from gaussdiff.data.shards import index_problem, read_index
    from gaussdiff.errors import DataError

    *_, good = small_shards(tmp_path)
    assert index_problem(good) is None and read_index(tmp_path) == good
    images = good["images"]
    damages = {
        "count must be a whole number >= 0": {"count": -1},
        "size must be >= 1": {"size": 0},
        "channels 1 or 3": {"channels": 2},
        "class_names must be a list of names": {"class_names": ["a", 2, "c"]},
        "labels must be class indices": [{"labels": good["labels"][:-1] + [3]}, {"labels": [True] * 13}],
        "captions must be a list of 13 strings": [{"captions": good["captions"][:-1]},
                                                  {"captions": good["captions"][:-1] + [None]}],
        "images must list 13 [shard, offset, length] entries": [
            {"images": images[:-1]}, {"images": images[:-1] + [[3, *images[-1][1:]]]},
            {"images": images[:-1] + [[images[-1][0], -1, images[-1][2]]]}],
        "shards must name files in its folder": {"shards": [{**s, "name": f"sub/{s['name']}"} for s in good["shards"]]},
    }
    for reason, changes in damages.items():
        for change in changes if isinstance(changes, list) else [changes]:
            assert reason in (index_problem({**good, **change}) or ""), change
    (tmp_path / "shard-000001.tar").unlink()
    with pytest.raises(DataError, match=r"shard shard-000001.tar is missing \(1 of 3\)"):
        read_index(tmp_path)


def test_an_image_whose_bytes_are_damaged_in_its_shard_names_itself(tmp_path):
    """The index says where image 7's PNG lies (shard 1, offset, length): zeroing those bytes makes reading image 7
    a DataError naming the shard and the image, not a PIL traceback, while its neighbours still read exactly."""
    from gaussdiff.data.shards import read_index
    from gaussdiff.errors import DataError

    images, *_, index = small_shards(tmp_path)
    shard, offset, length = index["images"][7]
    with open(tmp_path / index["shards"][shard]["name"], "r+b") as f:
        f.seek(offset)
        f.write(bytes(length))
    lazy = ShardImages(tmp_path, read_index(tmp_path))
    with pytest.raises(DataError, match=r"shard-000001.tar: cannot read image 7 \("):
        lazy[7]
    assert torch.equal(lazy[torch.tensor([6, 8])], images[[6, 8]])
