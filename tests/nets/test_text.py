"""The caption encoder: positions make it order-aware, and its context is layer-normalised."""

import torch

from gaussdiff.nets.text import CaptionEncoder, TextEncoderConfig


def encoder() -> CaptionEncoder:
    torch.manual_seed(0)
    return CaptionEncoder(TextEncoderConfig(vocab_size=10, max_length=6, text_width=16, text_layers=1,
                                            text_heads=2)).double().eval()


def test_the_context_depends_on_word_order():
    """Without positional embeddings a transformer is permutation-equivariant: "1 4 5" and "1 5 4" would give
    token 5 the same context at either place. With learned positions (drawn at 0.01) it differs by far more
    than float64 rounding."""
    net = encoder()
    context, _ = net(torch.tensor([[1, 4, 5], [1, 5, 4]]))
    assert (context[0, 2] - context[1, 1]).abs().max() > 1e-6
    assert (context[0, 1] - context[1, 2]).abs().max() > 1e-6


def test_the_context_is_layer_normalised():
    """tau_theta ends in a LayerNorm (pre-norm layers leave the residual stream unnormalised): each token's
    context has mean 0 and variance v / (v + 1e-5) ~ 1 over the width, at the norm's initial scale and shift."""
    context, _ = encoder()(torch.tensor([[1, 4, 5, 0], [1, 3, 0, 0]]))
    torch.testing.assert_close(context.mean(-1), torch.zeros(2, 4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(context.var(-1, unbiased=False), torch.ones(2, 4, dtype=torch.float64), rtol=0,
                               atol=1e-3)
