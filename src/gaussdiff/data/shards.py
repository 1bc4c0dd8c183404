"""Prepared shards: a dataset decoded, resized and cropped once, written as tar files any WebDataset reader can
stream (``shard-000000.tar`` holding ``KEY.png`` and ``KEY.json`` per image), with an ``index.json`` beside them.

Why tar: sequential, standard and readable without gaussdiff (WebDataset's layout). Why the index: it
gives each image's shard, byte offset and length, so that a run reads images in any order it likes
(its DataOrder, an exact resume, one rank's part) by seeking, instead of streaming a shard from its
start; and it holds the labels and captions, so that they load with the index, not with the pixels.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import DataError

INDEX = "index.json"
FORMAT = "gaussdiff-shards-1"


def is_shards(path: Path) -> bool:
    """Whether ``path`` holds prepared shards: an ``index.json`` of this format at its top, or beside shard
    files (a damaged index is then reported by :func:`read_index`, not taken for an image of a folder)."""
    index = path / INDEX
    if not index.is_file():
        return False
    if any(path.glob("shard-*.tar")):
        return True
    try:
        return json.loads(index.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_shards(images: Tensor | LazyImages, labels: Tensor | None, class_names: list[str] | None,
                 captions: list[str] | None, out: Path, shard_size: int = 1000,
                 progress: Callable[[int], object] | None = None) -> dict:
    """Write ``images`` (``uint8 [N, C, S, S]``, indexable in chunks: a tensor or a lazy folder) with their labels
    and captions as shards in ``out``, ``progress(n)`` called after each shard of n images; returns the index
    written."""
    n, c, size = len(images), images.shape[1], images.shape[-1]
    out.mkdir(parents=True, exist_ok=True)
    entries, shards = [], []
    for first in range(0, n, shard_size):
        name = f"shard-{first // shard_size:06d}.tar"
        last = min(n, first + shard_size)
        batch = images[torch.arange(first, last)]
        with tarfile.open(out / name, "w") as tar:
            for i in range(first, last):
                array = batch[i - first].permute(1, 2, 0).numpy()
                buffer = io.BytesIO()
                Image.fromarray(array[:, :, 0] if c == 1 else array).save(buffer, format="PNG")
                meta = {"label": None if labels is None else int(labels[i]),
                        "text": None if captions is None else captions[i]}
                for suffix, data in (("png", buffer.getvalue()), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{i:09d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        with tarfile.open(out / name) as tar:  # read back: where each image's bytes start
            offsets = {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
        for i in range(first, last):
            offset, length = offsets[f"{i:09d}.png"]
            entries.append([len(shards), offset, length])
        shards.append({"name": name, "count": last - first})
        if progress is not None:
            progress(last - first)
    index = {"format": FORMAT, "count": n, "size": size, "channels": c, "class_names": class_names,
             "labels": None if labels is None else [int(v) for v in labels], "captions": captions,
             "shards": shards, "images": entries}
    (out / INDEX).write_text(json.dumps(index))
    return index


class LazyImages:
    """A lazy ``uint8 [N, C, S, S]`` array: indexing decodes just the images asked for (:meth:`decode`, one image as
    ``[S, S]`` or ``[S, S, C]``), so that data of any size streams through a run."""

    size: int
    channels: int

    def __len__(self) -> int:
        raise NotImplementedError

    croppable = False
    """Whether :meth:`decode` can cut its square elsewhere than the center (``at``)."""

    def decode(self, i: int, at: tuple[float, float] | None = None) -> np.ndarray:
        raise NotImplementedError

    def read(self, indices: Tensor, at: Tensor | None = None) -> Tensor:
        """Images ``indices`` as ``uint8 [b, C, S, S]``, each cut at ``at[j]`` (``[b, 2]`` fractions of the slack;
        None: the center)."""
        if not len(indices):
            return torch.zeros((0, self.channels, self.size, self.size), dtype=torch.uint8)
        if at is not None and not self.croppable:
            raise DataError("these images are stored square and cut once: they take no crop places")
        places = [None] * len(indices) if at is None else [tuple(p) for p in at.tolist()]
        arrays = [self.decode(i, p) if p is not None else self.decode(i) for i, p in zip(indices.tolist(), places)]
        stacked = np.stack([a[:, :, None] if a.ndim == 2 else a for a in arrays])
        return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self), self.channels, self.size, self.size

    def __getitem__(self, index: Tensor | int | slice) -> Tensor:
        picked = range(len(self))[index] if isinstance(index, (int, slice)) else index.tolist()
        if isinstance(picked, int):
            return self.read(torch.tensor([picked]))[0]
        return self.read(torch.tensor(list(picked), dtype=torch.long))


class ShardImages(LazyImages):
    """The images of prepared shards, each read by seeking to its bytes and decoded."""

    def __init__(self, root: Path, index: dict) -> None:
        self.root, self.size, self.channels = root, index["size"], index["channels"]
        self.shard_names = [s["name"] for s in index["shards"]]
        self.entries = index["images"]

    def __len__(self) -> int:
        return len(self.entries)

    def decode(self, i: int) -> np.ndarray:
        shard, offset, length = self.entries[i]
        path = self.root / self.shard_names[shard]
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                with Image.open(io.BytesIO(f.read(length))) as img:
                    return np.asarray(img.convert("L" if self.channels == 1 else "RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{path}: cannot read image {i} ({type(e).__name__})") from None


def _ints(values: object, low: int, high: float = float("inf")) -> bool:
    return isinstance(values, list) and all(type(v) is int and low <= v < high for v in values)


def index_problem(index: object) -> str | None:
    """What is wrong with a shard index, as :func:`write_shards` writes it, or None."""
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        return f"format is not {FORMAT}"
    n, shards = index.get("count"), index.get("shards")
    if type(n) is not int or n < 0:
        return "count must be a whole number >= 0"
    if type(index.get("size")) is not int or index["size"] < 1 or index.get("channels") not in (1, 3):
        return "size must be >= 1 and channels 1 or 3"
    names = index.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(c, str) for c in names)):
        return "class_names must be a list of names"
    labels = index.get("labels")
    if labels is not None and not (isinstance(labels, list) and len(labels) == n):
        return f"labels must be a list of {n}"
    if labels is not None and not _ints(labels, 0, len(names) if names else float("inf")):
        return "labels must be class indices"
    captions = index.get("captions")
    if captions is not None and not (isinstance(captions, list) and len(captions) == n
                                     and all(isinstance(c, str) for c in captions)):
        return f"captions must be a list of {n} strings"
    if not isinstance(shards, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) and Path(s["name"]).name == s["name"]
            and type(s.get("count")) is int for s in shards):
        return "shards must name files in its folder, with their counts"
    images = index.get("images")
    if not (isinstance(images, list) and len(images) == n and all(
            isinstance(e, list) and len(e) == 3 and _ints(e[:1], 0, len(shards)) and _ints(e[1:], 0) for e in images)):
        return f"images must list {n} [shard, offset, length] entries"
    return None


def read_index(root: Path) -> dict:
    """The index of the shards in ``root``, checked (:func:`index_problem`) and with every shard file present; a
    :class:`DataError` otherwise."""
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{root / INDEX}: unreadable shard index ({type(e).__name__})") from None
    problem = index_problem(index)
    if problem:
        raise DataError(f"{root / INDEX}: {problem} (not what gaussdiff prepare writes: prepare it again)")
    missing = [s["name"] for s in index["shards"] if not (root / s["name"]).is_file()]
    if missing:
        raise DataError(f"{root}: shard {missing[0]} is missing ({len(missing)} of {len(index['shards'])})")
    return index
