"""``gaussdiff prepare``: decode, resize and crop a dataset once into shards that ``train --data DIR`` streams."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from tqdm.auto import tqdm

from ..data.datasets import load_data
from ..data.shards import write_shards
from ..errors import UsageError
from .options import at_least, check_writable_dir


@dataclass
class Prepare:
    """Decode, resize and center-crop a dataset once and write it as tar shards (WebDataset's layout) with an
    index of offsets, labels and captions (docs/data.md); train on it with --data OUT."""

    data: tyro.conf.Positional[str]
    """A folder of images (sub-folders = classes; captions from metadata.jsonl or .csv), a .npz or a built-in."""
    out: Path
    """The folder to write the shards and index.json in (it must not exist, or be empty)."""
    image_size: int | None = None
    """Resolution (1..1024; folders default to 32)."""
    image_channels: int | None = None
    """1 (grey) or 3 (RGB); folders default to 3."""
    shard_size: int = 1000
    """Images per shard (>= 1)."""
    skip_bad_images: bool = False
    """Leave unreadable images out (listed on stderr) instead of stopping before any shard is written."""

    def __call__(self) -> None:
        at_least("--shard-size", self.shard_size, 1)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise UsageError(f"--out {self.out}: exists and is not an empty folder")
        data = load_data(self.data, "train", self.image_size, self.image_channels, stream="stream",
                         skip_bad=self.skip_bad_images)
        data.check(self.data)
        check_writable_dir(self.out, "--out", keep=True)
        with tqdm(total=len(data), desc="prepare", dynamic_ncols=True) as bar:
            index = write_shards(data.images, data.labels, data.class_names, data.captions, self.out,
                                 self.shard_size, progress=bar.update)
        for path in data.skipped:
            print(f"gaussdiff: warning: left out {path} (unreadable)")
        print(f"wrote {index['count']} images of {index['size']}x{index['size']} in {len(index['shards'])} shard(s) "
              f"to {self.out}: gaussdiff train --data {self.out}")
