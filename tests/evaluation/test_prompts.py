"""Prompt accuracy on ``shapes``: every attribute must match, a one-object prompt ignores the second object's
heads, and the seen / held-out split follows the prompts' (shape, colour) pairs."""

import math

import torch

from gaussdiff.data.shapes import HEAD_SIZES, generate_shapes, is_held_out
from gaussdiff.evaluation.features import classifier_targets, heads_loss, predict_heads
from gaussdiff.data import ImageData
from gaussdiff.evaluation.quality import prompt_accuracy


def logits_of(attributes: torch.Tensor) -> torch.Tensor:
    """Logits that put all weight on the given attributes (an absent object: value 0, which must not count)."""
    parts = [torch.nn.functional.one_hot(attributes[:, i].clamp(min=0), k).double() * 10
             for i, k in enumerate(HEAD_SIZES)]
    return torch.cat(parts, dim=1)


def test_prompt_accuracy_needs_every_attribute_and_splits_seen_from_held_out():
    attributes = generate_shapes(200, 3, "include").attributes
    held = is_held_out(attributes)
    assert 0 < held.sum() < 200
    perfect = prompt_accuracy(logits_of(attributes), attributes)
    assert (perfect.accuracy, perfect.seen, perfect.held_out) == (1.0, 1.0, 1.0)
    assert (perfect.n_seen, perfect.n_held_out) == (int((~held).sum()), int(held.sum()))
    # One wrong colour of object 1 in every other scene: exactly those fail, in both groups.
    wrong = attributes.clone()
    wrong[::2, 2] = (wrong[::2, 2] + 1) % HEAD_SIZES[2]
    result = prompt_accuracy(logits_of(wrong), attributes)
    odd = torch.arange(200) % 2 == 1
    assert result.accuracy == 0.5
    assert result.held_out == float(odd[held].double().mean()) and result.seen == float(odd[~held].double().mean())
    # A one-object scene whose classifier also "sees" a second object's heads still matches: they are moot.
    single = attributes[attributes[:, 0] < 4][:5]
    noisy = logits_of(single)
    noisy[:, sum(HEAD_SIZES[:4]):] = torch.randn(5, sum(HEAD_SIZES[4:]), dtype=torch.float64)
    assert prompt_accuracy(noisy, single).accuracy == 1.0


def test_attribute_heads_targets_loss_and_prediction():
    # On scenes the domain classifier learns one head per attribute, -1 (no second object) left out of the
    # loss: the loss of confidently right logits is ~0, and that of uniform logits is the sum over heads of
    # log(head size) (each head's cross-entropy is a mean over the examples that have it).
    scenes = generate_shapes(64, 4, "include")
    data = ImageData(scenes.images, None, captions=scenes.captions, attributes=scenes.attributes)
    targets, heads = classifier_targets(data)
    assert heads == HEAD_SIZES and torch.equal(targets, scenes.attributes)
    assert heads_loss(logits_of(targets) * 10, targets, heads).item() < 1e-6
    uniform = torch.zeros(64, sum(HEAD_SIZES), dtype=torch.float64)
    expected = sum(math.log(k) for k in HEAD_SIZES)
    torch.testing.assert_close(heads_loss(uniform, targets, heads).item(), expected, rtol=1e-12, atol=0)
    assert torch.equal(predict_heads(logits_of(targets), heads)[:, :4], targets[:, :4])
