"""``gaussdiff prepare``: decode, resize and crop a dataset once into shards that ``train --data DIR`` streams."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro
from tqdm.auto import tqdm

from ..data.datasets import load_data
from ..data.shards import write_shards
from ..errors import DataError, UsageError
from .options import at_least, check_writable_dir


@dataclass
class Prepare:
    """Decode, resize and center-crop a dataset once and write it as tar shards (WebDataset's layout) with an
    index of offsets, labels and captions (docs/data.md); train on it with --data OUT."""

    data: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DATA")]
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
    """Decode every image once first and leave the unreadable ones out (listed on stderr). Without it a damaged
    image stops prepare: before any shard when its header is bad, else at its shard, removing what was written."""

    def __call__(self) -> None:
        at_least("--shard-size", self.shard_size, 1)
        source = Path(self.data)
        if source.is_dir() and self.out.resolve().is_relative_to(source.resolve()):
            # Its shards would become files of the folder: the next prepare or train of it would refuse them.
            raise UsageError(f"--out {self.out}: inside the folder it prepares ({source}); write it elsewhere")
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise UsageError(f"--out {self.out}: exists and is not an empty folder")
        data = load_data(self.data, "train", self.image_size, self.image_channels, stream="stream",
                         skip_bad=self.skip_bad_images)
        data.check(self.data)
        made = not self.out.exists()
        check_writable_dir(self.out, "--out", keep=True)
        try:
            with tqdm(total=len(data), desc="prepare", dynamic_ncols=True) as bar:
                index = write_shards(data.images, data.labels, data.class_names, data.captions, self.out,
                                     self.shard_size, progress=bar.update)
        except DataError as e:  # an image cut short, found only by decoding it: no half-prepared folder is left
            for path in list(self.out.iterdir()):  # the folder was empty: all of it is prepare's
                path.unlink()
            if made:
                self.out.rmdir()
            raise DataError(f"{e}; nothing written (--skip-bad-images leaves unreadable images out)") from None
        for path in data.skipped:
            print(f"gaussdiff: warning: left out {path} (unreadable)")
        print(f"wrote {index['count']} images of {index['size']}x{index['size']} in {len(index['shards'])} shard(s) "
              f"to {self.out}: gaussdiff train --data {self.out}")
