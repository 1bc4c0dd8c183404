"""Datasets: built-in (scikit-learn's digits, Debian's Fashion-MNIST), image folders and .npz files.

Everything loads into memory as ``uint8 [N, C, H, W]`` with optional ``int64 [N]`` labels; the
trainer scales to [-1, 1] on the fly (``to_model_range``). A dataset offers its conditions as a
dict (:attr:`ImageData.conditions`: ``{"y": labels}`` for labelled data), which the trainer hands
to the model as keywords without knowing their names. Bad input raises :class:`DataError` with a
one-line message that names the file.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class DataConfig:
    """What to train on."""

    data: str = "digits"
    """``digits``, ``fashion-mnist``, a folder of images (sub-folders = classes) or a ``.npz``."""
    image_size: int | None = None
    """Resolution; built-in datasets fix it, folders default to 32."""
    image_channels: int | None = None
    """1 (grey) or 3 (RGB); folders default to 3."""
    data_dir: Path | None = None
    """Where Fashion-MNIST's IDX files are (default /usr/share/datasets/fashion-mnist)."""
    # Read from the data when a run starts (None: unlabelled); not an option.
    num_classes: Annotated[int | None, tyro.conf.Suppress] = None


@dataclass
class ImageData:
    """Images ``uint8 [N, C, H, W]``, labels ``int64 [N]`` or None, class names, and optionally a caption
    per image and, for generated scenes (``shapes``), the attributes drawn, ``int64 [N, A]``."""

    images: Tensor
    labels: Tensor | None
    class_names: list[str] | None = None
    captions: list[str] | None = None
    attributes: Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def conditions(self) -> dict[str, Tensor]:
        """Every condition the data offers, by the model keyword it feeds, ``[N, ...]`` each:
        ``{"y": labels}`` for labelled data, ``{}`` otherwise."""
        return {} if self.labels is None else {"y": self.labels}

    def resolve(self, config: DataConfig) -> DataConfig:
        """``config`` with the size, channels and classes of this data filled in."""
        return replace(config, image_channels=self.shape[0], image_size=self.shape[-1], num_classes=self.num_classes)


def to_model_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to the nearest of the 256 levels."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def load_digits_data(split: str = "train") -> ImageData:
    """scikit-learn's 8x8 digits (1797 images, 17 grey levels), with labels; 10% held out as 'test'."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    # A fixed permutation, so the held-out split is the same for every run.
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    cut = len(images) - len(images) // 10
    idx = order[:cut] if split == "train" else order[cut:]
    return ImageData(images[idx], labels[idx], [str(i) for i in range(10)])


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path}: not an IDX file of unsigned bytes")
        dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, struct.error, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read IDX data ({e})") from None


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def load_fashion_mnist(split: str = "train", root: Path = FASHION_MNIST_DIR) -> ImageData:
    """Fashion-MNIST 28x28 from the IDX files of Debian's ``dataset-fashion-mnist``."""
    prefix = "train" if split == "train" else "t10k"
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_path.exists() or not labels_path.exists():
        raise DataError(
            f"Fashion-MNIST not found in {root}: install it with "
            "'apt-get install dataset-fashion-mnist' or pass --data-dir"
        )
    images = torch.from_numpy(_read_idx(images_path).copy())[:, None]
    labels = torch.from_numpy(_read_idx(labels_path).astype(np.int64))
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels")
    return ImageData(images, labels, FASHION_CLASSES)


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Resize the short side to ``size`` and center-crop (the ADM recipe), as uint8 [H, W, C]."""
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            scale = size / min(img.size)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'corrupt'})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_image_folder(root: Path, size: int, channels: int) -> ImageData:
    """Every image under ``root`` (recursive). Sub-folders of ``root`` become class labels when
    every image sits in one; otherwise the data is unlabelled. Any other file is an error."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"{root}: no images found (an empty folder)")
    bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise DataError(f"{bad[0]}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
    images = np.stack([_load_image(p, size, channels) for p in files])
    tops = [p.relative_to(root).parts for p in files]
    labels, names = None, None
    if all(len(parts) > 1 for parts in tops):
        names = sorted({parts[0] for parts in tops})
        labels = torch.tensor([names.index(parts[0]) for parts in tops], dtype=torch.long)
    return ImageData(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, names)


def load_npz(path: Path, size: int | None = None) -> ImageData:
    """A ``.npz`` of uint8 ``[N, H, W, C]`` images in ``arr_0`` and optional labels in ``arr_1``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f:
                raise DataError(f"{path}: no 'arr_0' array of images")
            arr = f["arr_0"]
            labels = f["arr_1"] if "arr_1" in f else None
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read .npz ({e})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise DataError(f"{path}: arr_0 must be uint8 [N, H, W, C], got {arr.dtype} {list(arr.shape)}")
    if size is not None and arr.shape[1:3] != (size, size):
        raise DataError(f"{path}: images are {arr.shape[1]}x{arr.shape[2]}, expected {size}x{size}")
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    label_tensor = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    names = None if label_tensor is None else [str(i) for i in range(int(label_tensor.max()) + 1)]
    return ImageData(images, label_tensor, names)


def load_data(
    data: str,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    data_dir: Path | None = None,
) -> ImageData:
    """Resolve ``data``: ``digits``, ``fashion-mnist``, a folder of images, or a ``.npz`` file.

    Built-in datasets have fixed sizes; ``image_size`` must match them when given. Folders are
    resized to ``image_size`` (default 32) with ``channels`` (default 3).
    """
    if data == "digits":
        out = load_digits_data(split)
    elif data == "fashion-mnist":
        out = load_fashion_mnist(split, data_dir or FASHION_MNIST_DIR)
    else:
        path = Path(data)
        if not path.exists():
            raise DataError(f"{data}: no such dataset, folder or file (built-in: digits, fashion-mnist)")
        if path.is_dir():
            return load_image_folder(path, image_size or 32, channels or 3)
        if path.suffix == ".npz":
            out = load_npz(path, image_size)
        else:
            raise DataError(f"{data}: expected a folder of images or a .npz file")
    if image_size is not None and out.images.shape[-1] != image_size:
        raise DataError(f"{data} has {out.images.shape[-1]}x{out.images.shape[-1]} images, not {image_size}x{image_size}")
    if channels is not None and out.images.shape[1] != channels:
        raise DataError(f"{data} has {out.images.shape[1]} channels, not {channels}")
    return out


def load_configured(config: DataConfig, split: str = "train") -> ImageData:
    """The ``split`` of the data a :class:`DataConfig` names, at its size and channels."""
    return load_data(config.data, split, config.image_size, config.image_channels, config.data_dir)
