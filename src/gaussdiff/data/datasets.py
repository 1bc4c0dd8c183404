"""Datasets: built-in (scikit-learn's digits, Debian's Fashion-MNIST, the generated ``shapes`` scenes),
image folders and .npz files.

Images are ``uint8 [N, C, H, W]``, held in memory or, when a folder or prepared shards stream, decoded on
access; with them optional ``int64 [N]`` labels and an optional caption per image. The trainer scales to
[-1, 1] on the fly (``to_model_range``). The conditions a model takes (labels, captions) are read from it by
the run's condition objects (:mod:`gaussdiff.conditioning.conditions`), so the trainer knows none by name.
Bad input raises :class:`DataError` with a one-line message that names the file (``path:LINE: ...`` where a
line is at fault).

Captions come from class names for the labelled built-ins and from ``metadata.jsonl``/``.csv`` beside a folder's
images (:mod:`gaussdiff.data.captions`); a ``.npz`` may hold a string array ``prompts`` beside its images.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..errors import DataError
from .captions import DIGIT_NAMES, DIGIT_TEMPLATES, METADATA_FILES, class_captions, folder_captions
from .shapes import load_shapes
from .shards import LazyImages, ShardImages, is_shards, read_index

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# What Pillow raises for a file it cannot decode: not an image, cut short, corrupt, or past its decompression-bomb
# limit (an image of hundreds of megapixels would exhaust memory).
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)
MAX_CLASSES = 100_000
"""The most classes a dataset's labels may name (ImageNet-21k has 21 841): a label embeds as a table row each."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
Stream = Literal["auto", "memory", "stream"]
Crop = Literal["center", "random"]


@dataclass(frozen=True)
class DataConfig:
    """What to train on."""

    data: str = "digits"
    """``digits``, ``fashion-mnist``, ``shapes``, a folder of images (sub-folders = classes; captions from its
    metadata.jsonl or metadata.csv) or a ``.npz``."""
    image_size: int | None = None
    """Resolution (1..1024): folders default to 32; a built-in dataset at another size is resized (area down, bicubic
    up)."""
    image_channels: int | None = None
    """1 (grey) or 3 (RGB); folders default to 3."""
    data_dir: Path | None = None
    """Where Fashion-MNIST's IDX files are (default /usr/share/datasets/fashion-mnist)."""
    stream: Stream = "auto"
    """A folder's images in memory (decoded once), or streamed (decoded by --workers DataLoader processes at each
    step, never all held); ``auto``: streamed when decoded they would take more than 1 GiB. The run records the
    choice. Built-in datasets and .npz files are in memory."""
    workers: int | None = None
    """DataLoader processes that decode a streamed folder's batches ahead of the trainer (>= 0; None: one per CPU
    core beyond the first, at most 8)."""
    hflip: bool = False
    """Flip each training image horizontally with probability 1/2 (drawn per example from the run's seed)."""
    crop: Crop = "center"
    """How a folder's image, its short side resized to --image-size, is cut square: its center (ADM's recipe), or
    at a place drawn per example and step from the run's seed (diffusers' --random_crop), which streams the folder
    (each step decodes afresh). Built-in datasets, .npz files and prepared shards are square already: center."""
    skip_bad_images: bool = False
    """A folder's unreadable images: by default the run stops before training with their count and the first three;
    with this every image is decoded once before training to find them (a streamed one too), and they are left out,
    their paths written to the run directory's bad-images.txt (their count in a warning)."""
    # Read from the data when a run starts (None: unlabelled); not an option.
    num_classes: Annotated[int | None, tyro.conf.Suppress] = None


@dataclass
class ImageData:
    """Images ``uint8 [N, C, H, W]``, labels ``int64 [N]`` or None, class names, and optionally a caption
    per image and, for generated scenes (``shapes``), the attributes drawn, ``int64 [N, A]``."""

    images: Tensor | LazyImages
    labels: Tensor | None
    class_names: list[str] | None = None
    captions: list[str] | None = None
    attributes: Tensor | None = None
    skipped: list[str] = field(default_factory=list)
    """Unreadable files left out (``--skip-bad-images``)."""

    @property
    def streamed(self) -> bool:
        """Whether the images are decoded on access (a folder's :class:`FolderImages`, prepared shards'
        :class:`~gaussdiff.data.shards.ShardImages`) rather than held in memory."""
        return not isinstance(self.images, Tensor)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def check(self, source: str) -> None:
        """Refuse data a run cannot train on and draw (``source`` names it): no images, other than 1 or 3
        channels (the sample grids are grey or RGB), or non-square images (the U-Net samples H x H)."""
        n, c, h, w = self.images.shape
        if n == 0:
            raise DataError(f"{source}: no images")
        if c not in (1, 3):
            raise DataError(f"{source}: images have {channel_count(c)}; expected 1 (grey) or 3 (RGB)")
        if h != w:
            raise DataError(f"{source}: images are {h}x{w}; gaussdiff trains on square images (crop or resize them)")

    def resolve(self, config: DataConfig) -> DataConfig:
        """``config`` with the size, channels and classes of this data filled in (after :meth:`check`), and
        whether it streams."""
        self.check(config.data)
        return replace(config, image_channels=self.shape[0], image_size=self.shape[-1], num_classes=self.num_classes,
                       stream="stream" if self.streamed else "memory")


def channel_count(c: int) -> str:
    """``c`` with its noun: "1 channel", "4 channels"."""
    return f"{c} channel" + ("" if c == 1 else "s")


def resize_images(images: Tensor, size: int) -> Tensor:
    """``uint8 [N, C, H, W]`` at ``size x size``: area averaging down (antialiased: each pixel the mean of those
    it covers), bicubic up; rounded to the nearest of the 256 levels."""
    x = images.float()
    if size < images.shape[-1]:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    else:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def to_model_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to the nearest of the 256 levels."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def load_digits_data(split: str = "train") -> ImageData:
    """scikit-learn's 8x8 digits (1797 images, 17 grey levels), with labels and captions ("the digit
    seven"); 10% held out as 'test'."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    # Captioned before the split, so an image has the same caption whichever split it lands in.
    captions = class_captions(labels, DIGIT_NAMES, seed=0, templates=DIGIT_TEMPLATES)
    # A fixed permutation, so the held-out split is the same for every run.
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    cut = len(images) - len(images) // 10
    idx = order[:cut] if split == "train" else order[cut:]
    return ImageData(images[idx], labels[idx], [str(i) for i in range(10)], [captions[i] for i in idx.tolist()])


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
# FASHION_CLASSES as a caption says them (the dataset's own names, "Trouser" and "Ankle boot", read better).
FASHION_NAMES = ("t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")


def load_fashion_mnist(split: str = "train", root: Path = FASHION_MNIST_DIR) -> ImageData:
    """Fashion-MNIST 28x28 from the IDX files of Debian's ``dataset-fashion-mnist``, with labels and
    captions ("a photo of an ankle boot")."""
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
    return ImageData(images, labels, FASHION_CLASSES, class_captions(labels, FASHION_NAMES, seed=0))


def _load_image(path: Path, size: int, channels: int, at: tuple[float, float] | None = None) -> np.ndarray:
    """Resize the short side to ``size`` and crop a square, as uint8 [H, W, C]: the center (the ADM recipe), or
    with ``at = (u, v)`` in [0, 1)^2 the window whose left and top are those fractions of the slack."""
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            scale = size / min(img.size)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BICUBIC)
            if at is None:
                left, top = (w - size) // 2, (h - size) // 2
            else:
                left, top = min(w - size, int(at[0] * (w - size + 1))), min(h - size, int(at[1] * (h - size + 1)))
            arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except UNREADABLE as e:
        why = str(e).splitlines()[0] if str(e) else "corrupt"
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {why})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


STREAM_ABOVE_BYTES = 1 << 30
"""``--stream auto`` streams a folder whose decoded images would take more than this."""


class FolderImages(LazyImages):
    """A folder's images, each decoded, resized and cropped (:func:`_load_image`) when indexed: center-cropped, or
    where :meth:`~gaussdiff.data.shards.LazyImages.read` says."""

    croppable = True

    def __init__(self, files: list[Path], size: int, channels: int) -> None:
        self.files, self.size, self.channels = files, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def decode(self, i: int, at: tuple[float, float] | None = None) -> np.ndarray:
        return _load_image(self.files[i], self.size, self.channels, at)


def mix_seed(seed: int, k: int, salt: int = 0) -> int:
    """A pseudo-random 64-bit value of (seed, k) (splitmix64's finalizer; ``salt`` keeps uses apart): torch's CPU
    generator reads only the low 32 bits of a seed, so derived streams are seeded with a mix, not seed + k."""
    mask = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + (k + 1) * 0xD1B54A32D192ED03 + salt) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def crop_places(seed: int, step: int, n: int) -> Tensor:
    """``[n, 2]`` fractions in [0, 1): where the n examples of global batch ``step`` are cropped (``--crop random``),
    a function of (seed, step) alone, so that every rank and a resumed run cut the same windows."""
    g = torch.Generator().manual_seed(mix_seed(seed, step, salt=0x632BE59BD9B4E019) & 0xFFFFFFFF)
    return torch.rand(n, 2, generator=g)


def load_shards(root: Path, size: int | None, channels: int | None, stream: Stream) -> ImageData:
    """Prepared shards (``gaussdiff prepare``): streamed, or decoded into memory, as ``stream`` says."""
    index = read_index(root)
    if size is not None and size != index["size"]:
        raise DataError(f"{root}: prepared at {index['size']}x{index['size']}, not {size}: prepare it again")
    if channels is not None and channels != index["channels"]:
        raise DataError(f"{root}: prepared with {channel_count(index['channels'])}, not {channels}")
    lazy = ShardImages(root, index)
    if stream == "auto":
        stream = "stream" if lazy.shape[0] * lazy.shape[1] * lazy.size ** 2 > STREAM_ABOVE_BYTES else "memory"
    labels = None if index["labels"] is None else torch.tensor(index["labels"], dtype=torch.long)
    images = lazy if stream == "stream" else lazy[torch.arange(len(lazy))]
    return ImageData(images, labels, index["class_names"], index["captions"])


ScanDepth = Literal["header", "verify", "decode"]


def scan_images(files: list[Path], depth: ScanDepth = "verify") -> list[tuple[Path, str]]:
    """The files Pillow cannot read, with why: by their ``header`` only (a streamed folder, whose bytes would
    otherwise all be read once more before the first step; a damaged one is named at its batch), read through
    by ``verify`` without decoding the pixels (PNG's chunk checksums find a file cut short anywhere; other formats
    check little more than the header), or ``decode``d, which finds every file that would fail later (what
    --skip-bad-images asks for: a JPEG cut short passes ``verify``)."""
    bad = []
    for path in files:
        try:
            with Image.open(path) as img:
                if depth == "verify":
                    img.verify()
                elif depth == "decode":
                    img.load()
        except UNREADABLE as e:
            bad.append((path, type(e).__name__))
    return bad


def load_image_folder(root: Path, size: int, channels: int, stream: Stream = "memory",
                      skip_bad: bool = False, crop: Crop = "center") -> ImageData:
    """Every image under ``root`` (recursive). Sub-folders of ``root`` become class labels when
    every image sits in one; otherwise the data is unlabelled. A ``metadata.jsonl`` or ``metadata.csv``
    at the top of ``root`` gives each image its caption. Any other file is an error. Random crops
    (``crop``) are cut at each step, so they stream."""
    if crop == "random" and stream == "memory":
        raise DataError(f"{root}: --crop random cuts each image afresh at every step, which needs --stream stream "
                        "(or auto), not memory")
    metadata = [root / name for name in METADATA_FILES if (root / name).is_file()]
    if len(metadata) > 1:
        raise DataError(f"{root}: both metadata.jsonl and metadata.csv give captions; keep one")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not p.name.startswith(".") and p not in metadata)
    if not files:
        raise DataError(f"{root}: no images found (an empty folder)")
    bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise DataError(f"{bad[0]}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
    # Captions before pixels: a bad metadata file fails at once, not after decoding every image.
    captions = folder_captions(root, files, metadata[0]) if metadata else None
    tops = [p.relative_to(root).parts for p in files]
    labels, names = None, None
    if all(len(parts) > 1 for parts in tops):
        names = sorted({parts[0] for parts in tops})
        labels = torch.tensor([names.index(parts[0]) for parts in tops], dtype=torch.long)
    if stream == "auto":
        big = len(files) * channels * size * size > STREAM_ABOVE_BYTES
        stream = "stream" if big or crop == "random" else "memory"
    # Skipping must find every image that would fail: one decoding pass over the folder (a streamed run would
    # otherwise stop at the batch of a damaged image at every resume, and prepare halfway through its shards).
    bad = scan_images(files, "decode" if skip_bad else "verify" if stream == "memory" else "header")
    if bad and not skip_bad:
        listed = "; ".join(f"{p} ({why})" for p, why in bad[:3])
        listed += f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DataError(f"{root}: {len(bad)} unreadable image(s): {listed} "
                        "(train's and prepare's --skip-bad-images leave them out)")
    if bad:
        unreadable = {p for p, _ in bad}
        keep = [i for i, p in enumerate(files) if p not in unreadable]
        files = [files[i] for i in keep]
        labels = None if labels is None else labels[keep]
        captions = None if captions is None else [captions[i] for i in keep]
    lazy = FolderImages(files, size, channels)
    images = lazy if stream == "stream" else lazy[torch.arange(len(lazy))]
    return ImageData(images, labels, names, captions, skipped=[str(p) for p, _ in bad])


def _check_npz_images(path: Path, arr: np.ndarray) -> None:
    """Refuse an ``arr_0`` (uint8, 4-D) a run cannot train on, with a hint for the usual mistakes: a
    channel-first array, an alpha channel."""
    n, h, w, c = arr.shape
    if n == 0:
        raise DataError(f"{path}: arr_0 holds no images (shape {list(arr.shape)})")
    if c not in (1, 3):
        if arr.shape[1] in (1, 3):
            raise DataError(f"{path}: arr_0 {list(arr.shape)} looks channel-first [N, C, H, W]; save it as "
                            "[N, H, W, C] (np.moveaxis(images, 1, -1))")
        hint = " (RGBA? drop the alpha channel: images[..., :3])" if c == 4 else ""
        raise DataError(f"{path}: images have {channel_count(c)}; expected 1 (grey) or 3 (RGB){hint}")
    if h != w:
        raise DataError(f"{path}: images are {h}x{w}; gaussdiff trains on square images (crop or resize them)")


def _npz_labels(path: Path, labels: np.ndarray, n: int) -> np.ndarray:
    """``arr_1`` as int64 class indices ``[n]``: 1-D, one per image, whole numbers (floats such as 3.0 are
    taken), none negative."""
    if labels.ndim != 1:
        raise DataError(f"{path}: arr_1 (labels) must be 1-D [N], got shape {list(labels.shape)}")
    if len(labels) != n:
        raise DataError(f"{path}: {len(labels)} labels (arr_1) for {n} images")
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{path}: arr_1 (labels) must hold class indices (integers), got {labels.dtype}")
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            raise DataError(f"{path}: arr_1 (labels) must hold whole numbers (class indices), got "
                            f"{float(labels[bad][0]):g} at index {int(np.argmax(bad))}")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: arr_1 (labels) must be class indices >= 0, got {labels.min():g} at index "
                        f"{int(np.argmin(labels))}")
    if len(labels) and labels.max() >= MAX_CLASSES:  # a class embedding row each: 1e12 would exhaust memory
        raise DataError(f"{path}: arr_1 (labels) holds class {labels.max():g} at index {int(np.argmax(labels))}; "
                        f"at most {MAX_CLASSES} classes (indices 0..{MAX_CLASSES - 1})")
    return labels.astype(np.int64)


def load_npz(path: Path, size: int | None = None) -> ImageData:
    """A ``.npz`` of uint8 ``[N, H, W, C]`` images in ``arr_0``, optional labels in ``arr_1`` and optional
    captions in ``prompts``, a string array ``[N]`` (``np.savez(path, images, prompts=np.array(texts))``)."""
    try:
        with open(path, "rb") as head:
            if head.read(4) != b"PK\x03\x04":  # np.load would try anything else as a pickle or a lone .npy
                raise DataError(f"{path}: not a .npz archive (np.savez writes a zip of .npy arrays)")
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f:
                raise DataError(f"{path}: no 'arr_0' array of images")
            arr = f["arr_0"]
            labels = f["arr_1"] if "arr_1" in f else None
            prompts = f["prompts"] if "prompts" in f else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise DataError(f"{path}: arr_0 must be uint8 [N, H, W, C], got {arr.dtype} {list(arr.shape)}")
    _check_npz_images(path, arr)
    if labels is not None:
        labels = _npz_labels(path, labels, len(arr))
    if size is not None and arr.shape[1:3] != (size, size):
        raise DataError(f"{path}: images are {arr.shape[1]}x{arr.shape[2]}, expected {size}x{size}")
    captions = None
    if prompts is not None:
        if prompts.dtype.kind != "U" or prompts.ndim != 1:
            got = f"{prompts.dtype} {list(prompts.shape)}"
            raise DataError(f"{path}: prompts must be a 1-D array of strings, got {got}")
        if len(prompts) != len(arr):
            raise DataError(f"{path}: {len(prompts)} prompts for {len(arr)} images")
        captions = [str(p) for p in prompts]
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    label_tensor = None if labels is None else torch.from_numpy(labels)
    names = None if label_tensor is None else [str(i) for i in range(int(label_tensor.max()) + 1)]
    return ImageData(images, label_tensor, names, captions)


BUILT_IN = ("digits", "fashion-mnist", "shapes")
"""The built-in datasets: each has its own held-out split (a folder, .npz or shards gives the same images for
every split)."""


def load_data(
    data: str,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    data_dir: Path | None = None,
    stream: Stream = "memory",
    skip_bad: bool = False,
    crop: Crop = "center",
) -> ImageData:
    """Resolve ``data``: ``digits``, ``fashion-mnist``, ``shapes``, a folder of images, or a ``.npz`` file.

    A built-in dataset at another ``image_size`` is resized (area down, bicubic up); a ``.npz`` or prepared
    shards must already have it. Folders are resized to ``image_size`` (default 32) with ``channels`` (default
    3), and cut square at the center or (``crop="random"``, folders alone) where each step draws.
    """
    if channels is not None and channels not in (1, 3):
        raise DataError(f"--image-channels must be 1 (grey) or 3 (RGB), not {channels}")
    if image_size is not None and not 1 <= image_size <= 1024:
        raise DataError(f"--image-size {image_size}: expected 1..1024")
    if crop == "random" and data in BUILT_IN:
        raise DataError(f"--crop random needs a folder of images ({data} is square already)")
    if data == "digits":
        out = load_digits_data(split)
    elif data == "fashion-mnist":
        out = load_fashion_mnist(split, data_dir or FASHION_MNIST_DIR)
    elif data == "shapes":
        scenes = load_shapes(split)
        out = ImageData(scenes.images, None, None, scenes.captions, scenes.attributes)
    else:
        path = Path(data)
        if not path.exists():
            raise DataError(f"{data}: no such dataset, folder or file (built-in: {', '.join(BUILT_IN)})")
        if path.is_dir() and is_shards(path):
            if crop == "random":
                raise DataError(f"{data}: prepared shards hold square images, cut once: --crop random needs the folder")
            return load_shards(path, image_size, channels, stream)
        if path.is_dir():
            return load_image_folder(path, image_size or 32, channels or 3, stream, skip_bad, crop)
        if crop == "random":
            raise DataError(f"{data}: --crop random needs a folder of images (a .npz holds square images)")
        if path.suffix == ".npz":
            out = load_npz(path, image_size)
        else:
            raise DataError(f"{data}: expected a folder of images or a .npz file")
    if image_size is not None and out.images.shape[-1] != image_size:
        # A built-in dataset at another size (a cascade's base model: Fashion-MNIST at 14x14).
        out = replace(out, images=resize_images(out.images, image_size))
    if channels is not None and out.images.shape[1] != channels:
        raise DataError(f"{data} has {channel_count(out.images.shape[1])}, not {channels}")
    return out


def load_configured(config: DataConfig, split: str = "train", stream: bool = False) -> ImageData:
    """The ``split`` of the data a :class:`DataConfig` names, at its size and channels; a folder streamed as
    ``config.stream`` says, and cut as ``config.crop`` says, when ``stream`` (the diffusion trainer), else in
    memory and center-cropped (measurements read it whole)."""
    return load_data(config.data, split, config.image_size, config.image_channels, config.data_dir,
                     config.stream if stream else "memory", config.skip_bad_images,
                     config.crop if stream else "center")


def check_center_crop(config: DataConfig, trainer: str) -> None:
    """The autoencoder's and classifiers' trainers read their data in memory, cut at the center: refuse
    ``--crop random`` there rather than ignore it."""
    if config.crop == "random":
        raise DataError(f"--crop random is for gaussdiff train's streamed folders; {trainer} reads center crops")
