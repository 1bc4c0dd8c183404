"""Text prompts as a condition: a word-level tokenizer built from a run's captions, and the
:class:`TextPrompt` condition that feeds ``tokens: [B, L]`` to ``model(x_t, t, tokens=...)``.

The tokenizer lower-cases and splits words from punctuation (``"A red-ish circle."`` ->
``a``, ``red-ish``, ``circle``, ``.``); its vocabulary is every word of the training captions, saved
in the run's config, so a prompt is read exactly as the captions were. Token 0 pads, token 1 starts
every prompt (:mod:`gaussdiff.nets.text`); the empty prompt, the start token alone, is the null
condition of classifier-free guidance (Ho & Salimans 2022), as in latent diffusion's text-to-image
model. A word the run never saw is refused in one line that names it and the known words closest
to it, never mapped silently to an unknown token.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.datasets import ImageData
from ..errors import ConfigError, DataError
from ..nets.text import PAD, START

SPECIAL_TOKENS = 2  # PAD and START come before the words
MAX_LENGTH = 77  # the longest caption a run reads (CLIP's context length); longer training captions are cut
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, in order (hyphenated words and contractions stay whole)."""
    return _WORD.findall(text.lower())


def refuse_one_string(argument: str, texts: Sequence[str]) -> None:
    """A string is a sequence of strings too: read as one, each of its characters would be a caption or a prompt."""
    if isinstance(texts, str):
        raise TypeError(f"{argument} must be a list of strings, not one string: [{texts!r}]")


@dataclass(frozen=True)
class Tokenizer:
    """Words <-> token ids ``[B, max_length]`` (0: padding, 1: start, then ``vocabulary``)."""

    vocabulary: tuple[str, ...]
    max_length: int

    @classmethod
    def build(cls, captions: Sequence[str]) -> Tokenizer:
        """The words of ``captions``, sorted, and room for the longest (at most :data:`MAX_LENGTH` tokens)."""
        refuse_one_string("captions", captions)
        if not captions:
            raise DataError("no captions to build a vocabulary from")
        words = [split_words(c) for c in captions]
        longest = max(len(w) for w in words) + 1
        return cls(tuple(sorted({w for ws in words for w in ws})), min(longest, MAX_LENGTH))

    @property
    def vocab_size(self) -> int:
        return SPECIAL_TOKENS + len(self.vocabulary)

    def _ids(self) -> dict[str, int]:
        return {w: SPECIAL_TOKENS + i for i, w in enumerate(self.vocabulary)}

    def encode(self, texts: Sequence[str], truncate: bool = False, length: int | None = None) -> Tensor:
        """``[len(texts), length]`` token ids (default ``max_length``), each prompt started and padded.

        An unknown word, or a prompt too long for the run (unless ``truncate``: training captions past
        :data:`MAX_LENGTH`), raises :class:`ConfigError` naming it.
        """
        refuse_one_string("texts", texts)
        length = self.max_length if length is None else length
        if length < 1:
            raise ValueError(f"length must be at least 1 (the start token), not {length}")
        ids = self._ids()
        out = torch.full((len(texts), length), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            words = split_words(text)
            unknown = [w for w in words if w not in ids]
            if unknown:
                close = difflib.get_close_matches(unknown[0], self.vocabulary, n=4, cutoff=0.5)
                hint = f"; close: {', '.join(close)}" if close else f"; some it knows: {', '.join(self.vocabulary[:6])}"
                raise ConfigError(f"unknown word {unknown[0]!r} in the prompt {text!r}: this run knows "
                                  f"{len(self.vocabulary)} words from its captions{hint}")
            if len(words) + 1 > length and not truncate:
                raise ConfigError(f"the prompt {text!r} has {len(words)} words; this run reads at most {length - 1}")
            tokens = [START] + [ids[w] for w in words][: length - 1]
            out[row, : len(tokens)] = torch.tensor(tokens)
        return out

    def decode(self, tokens: Tensor) -> list[str]:
        """Token ids ``[B, L]`` back to text (words joined by spaces)."""
        return [" ".join(self.vocabulary[int(i) - SPECIAL_TOKENS] for i in row if int(i) >= SPECIAL_TOKENS)
                for row in tokens]


def preview_prompts(captions: Sequence[str], k: int = 8) -> tuple[str, ...]:
    """``k`` distinct captions spread over the data (deterministic), for preview grids."""
    distinct = list(dict.fromkeys(captions))
    step = max(1, len(distinct) // k)
    return tuple(distinct[::step][:k])


@dataclass(frozen=True)
class TextPrompt:
    """Prompt tokens ``tokens: [B, L]``; the empty prompt (start token alone) is the null condition."""

    tokenizer: Tokenizer
    prompts: tuple[str, ...]
    """Prompts for preview grids, one row each."""
    p_drop: float = 0.0
    key: str = "tokens"
    noun: str = "captions"
    from_pixels = False  # read from the data's captions

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ConfigError("a text condition needs at least one prompt for its preview grids")

    def null(self, value: Tensor) -> Tensor:
        out = torch.full_like(value, PAD)
        out[:, 0] = START
        return out

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """``[len(prompts), L]`` tokens of prompts a user typed."""
        return self.tokenizer.encode(prompts)

    def of_data(self, data: ImageData) -> Tensor:
        if data.captions is None:
            raise DataError("this model reads text prompts, and the data has no captions")
        return self.tokenizer.encode(data.captions, truncate=True)

    @property
    def per_row(self) -> int:
        return 8

    def examples(self, n: int, device: torch.device | str) -> Tensor:
        # One preview prompt per row of per_row images.
        rows = [self.prompts[(i // self.per_row) % len(self.prompts)] for i in range(n)]
        return self.encode(rows).to(device)

    def example_names(self, n: int) -> list[str]:
        """The prompt of each of :meth:`examples`' rows (to write beside a grid)."""
        return [self.prompts[r % len(self.prompts)] for r in range(math.ceil(n / self.per_row))]

    def augment(self, value: Tensor, generator: torch.Generator | None = None,
                level: float | None = None) -> dict[str, Tensor]:
        return {self.key: value}  # given to the model as it is
