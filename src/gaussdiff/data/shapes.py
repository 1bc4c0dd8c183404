"""``shapes``: a compositional captioned dataset for text-to-image diffusion.

Each scene is an RGB 32x32 image of one or two flat-coloured objects on a dark background, drawn
deterministically from a seed with Pillow, and a caption generated from its attributes ("a large red
circle to the left of a small blue square"). To follow a caption a model must bind each colour and
size to the right shape and put it in the right place. The (shape, colour) pairs of :data:`HELD_OUT`
never occur in the training split, so prompting for them tests whether a model composes attributes
it has never seen together; the test split contains them.

Attributes, ``int64 [N, 7]`` (:data:`ATTRIBUTES`), each an index into the tuple named:

=========  ================  =======================================================
column     values            meaning
=========  ================  =======================================================
layout     LAYOUTS (6)       0-3: one object in the left / right / top / bottom part;
                             4: two side by side; 5: two one above the other
shape1     SHAPES (4)        object 1: the only one, the left one (4), the top one (5)
colour1    COLOUR_NAMES (5)
size1      SIZES (2)         small: 8 px across; large: 13.5 px
shape2     SHAPES (4)        object 2; -1 in all three for layouts 0-3
colour2    COLOUR_NAMES (5)
size2      SIZES (2)
=========  ================  =======================================================

Splits (:func:`load_shapes`): ``train``, 20000 scenes from seed 0 with the held-out pairs excluded
(rejected and redrawn); ``test``, 2000 scenes from seed 1 with every combination; ``classifier``,
20000 scenes from seed 2 with every combination, on which the attribute classifier that scores
samples learns (it must know the held-out pairs to recognise them; no diffusion model sees them).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..errors import DataError

SHAPES = ("circle", "square", "triangle", "diamond")
# Saturated and far apart in RGB, so that a pixel's colour names its object (for tests and classifiers).
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 250),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 220),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ("small", "large")
LAYOUTS = ("left", "right", "top", "bottom", "side by side", "one above the other")
ATTRIBUTES = ("layout", "shape1", "colour1", "size1", "shape2", "colour2", "size2")
HEAD_SIZES = (len(LAYOUTS),) + (len(SHAPES), len(COLOUR_NAMES), len(SIZES)) * 2  # (6, 4, 5, 2, 4, 5, 2)
HELD_OUT = (("triangle", "green"), ("circle", "purple"))
BACKGROUND = (24, 24, 24)
IMAGE_SIZE = 32

_SCALE = 4  # scenes are drawn at 4x and box-filtered down, which antialiases the edges
_CANVAS = IMAGE_SIZE * _SCALE
_HALF = (16, 27)  # half the width of a small / large object in 4x pixels: 8 and 13.5 px across at 32x32
_JITTER = 2 * _SCALE  # +-2 px at 32x32
_GAP = 2  # 4x pixels kept free on each side of the middle line between two objects: 1 px apart at 32x32
# A single object's nominal centre in 4x pixels: at 9 or 23 (of 32) along its axis, at 16 across it.
# Even a large one jittered outwards keeps 1 4x pixel off the edge (36 - 8 - 27 = 1).
_SINGLE_CENTRES = ((36, 64), (92, 64), (64, 36), (64, 92))
_HELD_OUT_INDICES = tuple((SHAPES.index(s), COLOUR_NAMES.index(c)) for s, c in HELD_OUT)

# Caption templates. Object 1 is always {first}; the mirrored templates name object 2 first.
_WHERE = ("on the left", "on the right", "at the top", "at the bottom")
_ONE = ("{first} {where}", "a picture of {first} {where}", "there is {first} {where}", "{where} there is {first}")
_TWO = {
    4: ("{first} to the left of {second}", "{second} to the right of {first}",
        "a picture of {first} to the left of {second}", "a picture of {second} to the right of {first}"),
    5: ("{first} above {second}", "{second} below {first}",
        "a picture of {first} above {second}", "a picture of {second} below {first}"),
}


def random_attributes(rng: np.random.Generator) -> np.ndarray:
    """Uniform attributes, ``int64 [7]``: two objects half the time (then layout 4 or 5), else one
    (layout 0-3, and -1 for object 2); shape, colour and size uniform and independent."""
    two = bool(rng.integers(2))
    layout = 4 + rng.integers(2) if two else rng.integers(4)
    attributes = np.concatenate([[layout], rng.integers(0, HEAD_SIZES[1:])]).astype(np.int64)
    if not two:
        attributes[4:] = -1
    return attributes


def _has_held_out(attributes: np.ndarray) -> bool:
    """:func:`is_held_out` of one row ``[7]``, without the cost of a tensor per scene."""
    pairs = {(int(attributes[1]), int(attributes[2])), (int(attributes[4]), int(attributes[5]))}
    return any(pair in pairs for pair in _HELD_OUT_INDICES)


def is_held_out(attributes: Tensor) -> Tensor:
    """``int64 [N, 7]`` -> ``bool [N]``: whether any object is a :data:`HELD_OUT` (shape, colour) pair."""
    out = torch.zeros(len(attributes), dtype=torch.bool, device=attributes.device)
    for shape, colour in _HELD_OUT_INDICES:
        for s, c in ((1, 2), (4, 5)):  # -1 (no object 2) never equals an index
            out |= (attributes[:, s] == shape) & (attributes[:, c] == colour)
    return out


def _place(attributes: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Where :func:`draw_scene` puts each object: ``(x, y, half)`` in 4x pixels, the object filling
    ``[x - half, x + half) x [y - half, y + half)``. Draws the jitter from ``rng``."""
    layout = int(attributes[0])
    if layout < 4:
        half = _HALF[attributes[3]]
        x, y = np.array(_SINGLE_CENTRES[layout]) + rng.integers(-_JITTER, _JITTER + 1, size=2)
        return [(int(x), int(y), half)]
    h1, h2 = _HALF[attributes[3]], _HALF[attributes[6]]
    jitter = rng.integers(-_JITTER, _JITTER + 1, size=4)
    mid = _CANVAS // 2
    # Along the layout's axis object 1 stays before the middle line and object 2 after it, each
    # _GAP away, so they can neither overlap nor share a pixel of the 32x32 image.
    along1 = int(np.clip(mid // 2 + jitter[0], h1, mid - _GAP - h1))
    along2 = int(np.clip(mid + mid // 2 + jitter[1], mid + _GAP + h2, _CANVAS - h2))
    # Across it both are centred +-2 px, which keeps even a large object 29 4x pixels inside (64 - 8 - 27).
    across1, across2 = (int(mid + j) for j in jitter[2:])
    if layout == 4:
        return [(along1, across1, h1), (along2, across2, h2)]
    return [(across1, along1, h1), (across2, along2, h2)]


def _draw_object(draw: ImageDraw.ImageDraw, shape: int, x: int, y: int, half: int, fill: tuple[int, int, int]) -> None:
    # PIL's boxes and polygons include their end points, so pixels x - half ... x + half - 1 give 2 * half
    # across, symmetric about x; apexes are two pixels wide to keep that symmetry.
    x0, y0, x1, y1 = x - half, y - half, x + half - 1, y + half - 1
    if shape == 0:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif shape == 1:
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif shape == 2:  # pointing up
        draw.polygon([(x - 1, y0), (x, y0), (x1, y1), (x0, y1)], fill=fill)
    else:  # a square rotated by 45 degrees
        corners = [(x - 1, y0), (x, y0), (x1, y - 1), (x1, y), (x, y1), (x - 1, y1), (x0, y), (x0, y - 1)]
        draw.polygon(corners, fill=fill)


def draw_scene(attributes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The scene of ``attributes`` (``[7]``), jittered by ``rng``, as ``uint8 [32, 32, 3]`` (H, W, C)."""
    image = Image.new("RGB", (_CANVAS, _CANVAS), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for k, (x, y, half) in enumerate(_place(attributes, rng)):
        shape, colour = int(attributes[1 + 3 * k]), int(attributes[2 + 3 * k])
        _draw_object(draw, shape, x, y, half, COLOURS[COLOUR_NAMES[colour]])
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


def _phrase(attributes: np.ndarray, k: int) -> str:
    shape, colour, size = (int(v) for v in attributes[1 + 3 * k : 4 + 3 * k])
    return f"a {SIZES[size]} {COLOUR_NAMES[colour]} {SHAPES[shape]}"


def caption(attributes: np.ndarray, rng: np.random.Generator) -> str:
    """A sentence naming every attribute of ``attributes`` (``[7]``), in a template chosen by ``rng``."""
    layout = int(attributes[0])
    if layout < 4:
        return _ONE[rng.integers(len(_ONE))].format(first=_phrase(attributes, 0), where=_WHERE[layout])
    templates = _TWO[layout]
    return templates[rng.integers(len(templates))].format(first=_phrase(attributes, 0), second=_phrase(attributes, 1))


def _object_pattern(k: int) -> str:
    return f"a (?P<size{k}>{'|'.join(SIZES)}) (?P<colour{k}>{'|'.join(COLOUR_NAMES)}) (?P<shape{k}>{'|'.join(SHAPES)})"


# One regular expression per template, made from the same tables as the captions so that every
# template is inverted; the layout is the template's (two objects) or read from {where} (one).
_WHERE_PATTERN = f"(?P<where>{'|'.join(_WHERE)})"
_PARSERS = [(re.compile(t.format(first=_object_pattern(1), where=_WHERE_PATTERN)), -1) for t in _ONE] + [
    (re.compile(t.format(first=_object_pattern(1), second=_object_pattern(2))), layout)
    for layout, templates in _TWO.items()
    for t in templates
]


def attributes_of_caption(text: str) -> np.ndarray:
    """The canonical attributes ``int64 [7]`` of a caption made by :func:`caption` (any template; case
    and spacing are ignored). Raises ``ValueError`` for any other text."""
    words = " ".join(text.lower().split())
    for pattern, layout in _PARSERS:
        match = pattern.fullmatch(words)
        if match is None:
            continue
        found = match.groupdict()
        out = np.full(len(ATTRIBUTES), -1, dtype=np.int64)
        out[0] = _WHERE.index(found["where"]) if layout < 0 else layout
        for k in (1, 2):
            if f"shape{k}" in found:
                shape, colour, size = found[f"shape{k}"], found[f"colour{k}"], found[f"size{k}"]
                out[3 * k - 2 : 3 * k + 1] = SHAPES.index(shape), COLOUR_NAMES.index(colour), SIZES.index(size)
        return out
    raise ValueError(f"not a shapes caption: {text!r}")


@dataclass
class Scenes:
    """Drawn scenes: images ``uint8 [n, 3, 32, 32]``, a caption each, attributes ``int64 [n, 7]``
    (:func:`gaussdiff.data.datasets.load_data` hands them on as an ``ImageData`` without labels)."""

    images: Tensor
    captions: list[str]
    attributes: Tensor


def generate_shapes(n: int, seed: int, held_out: Literal["exclude", "include"]) -> Scenes:
    """``n`` scenes from ``np.random.default_rng(seed)``, the same bits for the same arguments:
    images ``uint8 [n, 3, 32, 32]``, a caption each, attributes ``int64 [n, 7]``.
    ``held_out="exclude"`` redraws a scene's attributes until no object is a :data:`HELD_OUT` pair."""
    if held_out not in ("exclude", "include"):
        raise ValueError(f"held_out must be 'exclude' or 'include', not {held_out!r}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    attributes = np.empty((n, len(ATTRIBUTES)), dtype=np.int64)
    captions = []
    for i in range(n):
        a = random_attributes(rng)
        while held_out == "exclude" and _has_held_out(a):
            a = random_attributes(rng)
        # One generator draws attributes, jitter and template in this order, so the seed fixes every bit.
        attributes[i], images[i] = a, draw_scene(a, rng)
        captions.append(caption(a, rng))
    return Scenes(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions, torch.from_numpy(attributes))


_SPLITS: dict[str, tuple[int, int, Literal["exclude", "include"]]] = {
    "train": (20000, 0, "exclude"),
    "test": (2000, 1, "include"),
    # For the attribute classifier that scores samples: a measuring instrument must know the held-out
    # pairs to tell whether a model drew them; the diffusion model never sees this split.
    "classifier": (20000, 2, "include"),
}


def load_shapes(split: str = "train") -> Scenes:
    """``train``: 20000 scenes, seed 0, without the held-out pairs; ``test``: 2000 scenes, seed 1, all pairs;
    ``classifier``: 20000 scenes, seed 2, all pairs (to train the attribute classifier)."""
    if split not in _SPLITS:
        raise DataError(f"shapes has no split {split!r} (train, test, classifier)")
    drawn = _drawn(split)
    return Scenes(drawn.images.clone(), list(drawn.captions), drawn.attributes.clone())


@functools.cache
def _drawn(split: str) -> Scenes:
    """A split is drawn once a process (some 10 s for 20000 scenes): eval on shapes reads the training split for
    the reference, the classifier split and the test split each twice. :func:`load_shapes` hands out copies, so
    that no caller's change reaches another."""
    return generate_shapes(*_SPLITS[split])
