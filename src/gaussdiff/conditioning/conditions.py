"""Conditions as data: what a model takes besides (x_t, t), passed as ``model(x_t, t, **cond)``.

A run's :class:`ConditioningConfig` says which conditions the model takes, as :class:`Condition`
objects: class labels ``y`` (:class:`ClassLabel`) and text prompts ``tokens``
(:class:`~gaussdiff.conditioning.text.TextPrompt`), each read from a dataset by ``of_data``; a
super-resolution stage's :class:`~gaussdiff.conditioning.super_res.SuperResConfig` adds the low-resolution
image ``low_res`` and its augmentation level ``low_res_level``
(:class:`~gaussdiff.conditioning.super_res.LowResolution`). The trainer, the guidance wrappers and the
evaluators handle every condition alike through that interface, by its ``key``, its ``null`` (the "no
condition" value the model learns for classifier-free guidance) and its drop probability, so that none of
them knows a condition by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol

import torch
import tyro
from torch import Tensor

from ..data.datasets import ImageData
from ..errors import ConfigError, DataError
from .text import TextPrompt, Tokenizer


class Condition(Protocol):
    """One keyword of ``model(x_t, t, **cond)``."""

    @property
    def key(self) -> str:
        """The model's keyword."""

    @property
    def p_drop(self) -> float:
        """Classifier-free training: the share of examples whose condition is replaced by the null."""

    @property
    def from_pixels(self) -> bool:
        """Whether the condition is computed from each example's pixels (a super-resolution stage's
        low-resolution image: ``of_images``), which a trainer does for every step's decoded batch."""

    def null(self, value: Tensor) -> Tensor:
        """The null condition in place of ``value: [B, ...]`` (the unconditional branch)."""

    def of_data(self, data: ImageData) -> Tensor:
        """This condition of every example of ``data``, ``[N, ...]`` (a :class:`DataError` if it has none)."""

    def examples(self, n: int, device: torch.device | str) -> Tensor | None:
        """``n`` conditions for a preview grid, in rows of :attr:`per_row` images (None: take the data's own)."""

    def augment(self, value: Tensor, generator: torch.Generator | None = None,
                level: float | None = None) -> dict[str, Tensor]:
        """The model's keywords for ``value``: itself, or corrupted (a super-resolution stage's conditioning
        augmentation, at a random level in training, at ``level`` in sampling); noise from ``generator``."""

    @property
    def per_row(self) -> int:
        """How many images of a preview grid share a row."""

    @property
    def noun(self) -> str:
        """What the condition is, in words ("labels", "captions")."""

    def example_names(self, n: int) -> list[str]:
        """What to write beside each row of :meth:`examples`' grid (empty: nothing)."""


@dataclass(frozen=True)
class ClassLabel:
    """Class labels ``y: [B]`` in 0..K-1; label K is the null label (Ho & Salimans 2022)."""

    num_classes: int
    p_drop: float = 0.0
    key: str = "y"
    noun: str = "labels"
    from_pixels = False  # read from the data's labels

    def null(self, value: Tensor) -> Tensor:
        return torch.full_like(value, self.num_classes)

    def of_data(self, data: ImageData) -> Tensor:
        if data.labels is None:
            raise DataError("this model takes class labels, and the data has none")
        return data.labels

    def examples(self, n: int, device: torch.device | str) -> Tensor:
        return torch.arange(n, device=device) % self.num_classes

    @property
    def per_row(self) -> int:
        return self.num_classes

    def example_names(self, n: int) -> list[str]:
        return []  # each row runs through the classes: nothing per row to name

    def augment(self, value: Tensor, generator: torch.Generator | None = None,
                level: float | None = None) -> dict[str, Tensor]:
        return {self.key: value}  # given to the model as it is


@dataclass(frozen=True)
class ConditioningConfig:
    """Which of the data's conditions the model takes, and how often training drops each."""

    class_conditional: bool = False
    """Embed the dataset's labels (for guidance); needs a labelled dataset."""
    text: bool = False
    """Condition on the captions through a caption encoder and cross-attention; needs captioned data."""
    p_uncond: float = 0.0
    """Classifier-free guidance training: the share of labels (and captions) replaced by the null one."""
    # Read from the captions when a run starts; not options.
    vocabulary: Annotated[tuple[str, ...], tyro.conf.Suppress] = ()
    max_tokens: Annotated[int, tyro.conf.Suppress] = 0
    preview_prompts: Annotated[tuple[str, ...], tyro.conf.Suppress] = ()

    def check(self) -> None:
        """Refuse a share of dropped conditions out of [0, 1), or one with no condition to drop."""
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError(f"--p-uncond must lie in [0, 1), not {self.p_uncond:g}")
        if self.p_uncond > 0 and not (self.class_conditional or self.text):
            raise ConfigError("--p-uncond drops the model's labels or captions: it needs --class-conditional or --text")

    def conditions(self, num_classes: int | None) -> tuple[Condition, ...]:
        """The model's conditions for data with ``num_classes`` classes (None: unlabelled)."""
        self.check()
        out: list[Condition] = []
        if self.class_conditional:
            if num_classes is None:
                raise ConfigError("--class-conditional needs a labelled dataset (digits, fashion-mnist, a folder "
                                  "of class sub-folders, or a .npz with labels in arr_1)")
            out.append(ClassLabel(num_classes, self.p_uncond))
        if self.text:
            if not self.vocabulary:
                raise ConfigError("a text run's vocabulary is read from its captions when it starts")
            out.append(TextPrompt(self.tokenizer, self.preview_prompts, self.p_uncond))
        return tuple(out)

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.vocabulary, self.max_tokens)


def drop_conditions(cond: Mapping[str, Tensor], conditions: Sequence[Condition],
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Classifier-free training: each condition replaced by its null with its own probability.

    One network then learns both eps(x_t, t, c) and eps(x_t, t) (Ho & Salimans 2022, Algorithm 1).
    One uniform draw u per example, on CPU from ``generator`` so that runs repeat, drops every
    condition whose ``p_drop`` exceeds u: conditions of equal probability (a run's labels and captions)
    are dropped together, so the all-null branch that guidance uses is trained on a share p of the
    examples, not p squared.
    """
    out = dict(cond)
    if not conditions:
        return out
    u = torch.rand(len(cond[conditions[0].key]), generator=generator)
    for c in conditions:
        value = cond[c.key]
        drop = u < c.p_drop
        mask = drop.to(value.device).reshape(-1, *([1] * (value.dim() - 1)))
        out[c.key] = torch.where(mask, c.null(value), value)
    return out


def null_conditions(cond: Mapping[str, Tensor], conditions: Sequence[Condition]) -> dict[str, Tensor]:
    """``cond`` with every one of ``conditions`` replaced by its null (the unconditional branch)."""
    missing = [c.key for c in conditions if c.key not in cond]
    if missing:
        raise ValueError(f"the model takes the condition {missing[0]!r}, and none was given")
    return {k: next((c.null(v) for c in conditions if c.key == k), v) for k, v in cond.items()}
