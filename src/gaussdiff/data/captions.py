"""Captions: made from class names for the labelled built-ins, and read from a folder's ``metadata.jsonl`` or
``metadata.csv``.

- The labelled built-ins make one per image from its class name and a template ("a photo of a
  sneaker", "the digit seven"), the template drawn by a seeded generator (:func:`class_captions`),
  so every call gives the same captions.
- A folder of images may hold ``metadata.jsonl`` (``{"file_name": ..., "text": ...}`` a line) or
  ``metadata.csv`` (columns ``file_name`` and ``text``) at its top, the convention of the Hugging
  Face ``imagefolder`` loader, with ``file_name`` relative to the folder; every image then needs
  exactly one caption (:func:`folder_captions`). Bad input raises :class:`DataError` naming ``path:LINE``, or
  the image that has no caption.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from torch import Tensor

from ..errors import DataError

# The caption files a folder may hold at its top (Hugging Face's imagefolder names); they are not images.
METADATA_FILES = ("metadata.jsonl", "metadata.csv")

# Templates for captions of a labelled image: ``{name}`` is the class's readable name, ``{a}`` the same
# with its indefinite article ("an ankle boot").
OBJECT_TEMPLATES = ("a photo of {a}", "{a}", "a picture of {a}", "a drawing of {a}",
                    "a black and white photo of {a}", "a small picture of {a}")
DIGIT_TEMPLATES = ("the digit {name}", "a handwritten {name}", "a picture of the number {name}", "{a}",
                   "the number {name}, written by hand", "a handwritten digit {name}")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Spelt with a vowel but said with a consonant ("a one", "a unicorn", "a used car"), and the reverse ("an hour").
_A_BEFORE = ("one", "uni", "use", "usu", "eu", "ewe")
_AN_BEFORE = ("hour", "honest", "honour", "heir")


def with_article(noun: str) -> str:
    """``noun`` after its indefinite article, by how its first word sounds: "an ankle boot", "a one"."""
    word = noun.lower()
    vowel_sound = (word[:1] in tuple("aeiou") and not word.startswith(_A_BEFORE)) or word.startswith(_AN_BEFORE)
    return ("an " if vowel_sound else "a ") + noun


def class_captions(labels: Tensor, names: Sequence[str], seed: int,
                   templates: Sequence[str] = OBJECT_TEMPLATES) -> list[str]:
    """A lower-case caption per image: one of ``templates`` filled with the readable name of its class.

    ``labels``: int ``[N]`` indices into ``names``. The template of image i is the i-th draw of a numpy
    Generator seeded with ``seed``, so the same arguments give the same captions on every call.
    """
    filled = [[t.format(name=n.lower(), a=with_article(n.lower())) for t in templates] for n in names]
    choice = np.random.default_rng(seed).integers(len(templates), size=len(labels))
    return [filled[y][k] for y, k in zip(labels.tolist(), choice.tolist())]


def _read_text(path: Path) -> str:
    """A metadata file as text (UTF-8, a byte-order mark allowed); undecodable bytes are named by line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None


def _json_type(value: object) -> str:
    """What JSON calls the type of a decoded ``value``."""
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _caption_entry(path: Path, line: int, file_name: object, text: object) -> tuple[int, str, str]:
    """(line, file_name, stripped caption) of one metadata entry, or a DataError naming ``path:line``."""
    for key, value in (("file_name", file_name), ("text", text)):
        if value is None:
            raise DataError(f'{path}:{line}: no "{key}"')
        if not isinstance(value, str):
            raise DataError(f'{path}:{line}: "{key}" must be a string, not {with_article(_json_type(value))}')
        if not value.strip():
            raise DataError(f'{path}:{line}: "{key}" is empty')
    return line, file_name, text.strip()  # type: ignore[return-value,union-attr]


def _read_jsonl(path: Path) -> list[tuple[int, str, str]]:
    """The entries of a ``metadata.jsonl``: a JSON object a line, blank lines skipped."""
    entries = []
    # JSON Lines ends lines with "\n" only (str.splitlines would also split at "\u2028" inside a string).
    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(obj, dict):
            got = with_article(_json_type(obj))
            raise DataError(f'{path}:{n}: expected an object with "file_name" and "text", not {got}')
        entries.append(_caption_entry(path, n, obj.get("file_name"), obj.get("text")))
    return entries


def _read_csv(path: Path) -> list[tuple[int, str, str]]:
    """The entries of a ``metadata.csv``: a header naming ``file_name`` and ``text`` (other columns are
    ignored), then a row per image, blank lines skipped; quoted fields may hold commas and line breaks."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    entries = []
    try:
        first_row = next((row for row in reader if row), None)
        if first_row is None:
            return []
        header = [h.strip() for h in first_row]
        for key in ("file_name", "text"):
            if key not in header:
                raise DataError(f"{path}:{reader.line_num}: the header has no '{key}' column "
                                "(it needs 'file_name' and 'text')")
            if header.count(key) > 1:
                raise DataError(f"{path}:{reader.line_num}: the header names '{key}' twice")
        i_name, i_text = header.index("file_name"), header.index("text")
        first = reader.line_num + 1
        for row in reader:
            # A quoted field may span lines, and line_num is the row's last: name the row by its first.
            if row:
                if len(row) != len(header):
                    fields = f"{len(row)} field" + ("s" if len(row) != 1 else "")
                    raise DataError(f"{path}:{first}: {fields}, but the header has {len(header)}")
                entries.append(_caption_entry(path, first, row[i_name], row[i_text]))
            first = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return entries


def folder_captions(root: Path, files: list[Path], metadata: Path) -> list[str]:
    """The caption of each of ``files`` (images under ``root``) from ``metadata``: each image listed once."""
    entries = _read_jsonl(metadata) if metadata.suffix == ".jsonl" else _read_csv(metadata)
    if not entries:
        raise DataError(f"{metadata}: no entries (an empty metadata file)")
    images = {p.relative_to(root).as_posix() for p in files}
    captions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, name, text in entries:
        key = PurePosixPath(name).as_posix()  # "./a.png" and "a//b.png" name "a.png" and "a/b.png"
        if key in first_line:
            raise DataError(f"{metadata}:{line}: {name!r} is listed twice (first on line {first_line[key]})")
        if key not in images:
            raise DataError(f"{metadata}:{line}: {name!r} is not an image in {root}")
        first_line[key], captions[key] = line, text
    missing = [p for p in files if p.relative_to(root).as_posix() not in captions]
    if missing:
        more = f" ({len(missing)} images have none)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: no caption in {metadata}{more}")
    return [captions[p.relative_to(root).as_posix()] for p in files]
