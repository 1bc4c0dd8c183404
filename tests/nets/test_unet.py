"""The U-Net: shapes at every resolution the product uses, conditioning, and its embedding."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaussdiff.training.checkpoint import load_state_dict_strict
from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.conditioning.text import Tokenizer
from gaussdiff.nets.text import CaptionEncoder, TextEncoderConfig
from gaussdiff.nets.unet import Attention, ResBlock, Upsample, timestep_embedding

EPS = torch.finfo(torch.float64).eps  # 2 u: one correctly rounded operation errs by at most u = EPS / 2
EPS32 = torch.finfo(torch.float32).eps
# A sum of n terms errs by at most n u times the sum of their magnitudes (Higham's gamma_n). Modelling the
# roundings as independent and mean zero (Higham & Mary 2019), an error made of n of them, each at most u times a
# magnitude M, exceeds LAMBDA sqrt(n) u M only with probability 2 exp(-LAMBDA^2 / 2) (Hoeffding): 3e-8 for 6.
LAMBDA = 6


def layer_sums(net, size, context=0):
    """The length of each sum a forward pass chains: every convolution's or linear layer's fan-in, every norm's
    group (at most size^2 pixels), every attention's two sums over at most size^2 tokens (and the context's)."""
    sums = []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            sums.append(m.weight[0].numel())
        elif isinstance(m, nn.GroupNorm):
            sums.append(m.num_channels // m.num_groups * size * size)
        elif isinstance(m, nn.LayerNorm):
            sums.append(m.normalized_shape[0])
        elif isinstance(m, Attention):
            sums += [size * size] * 2 + [context] * 2
        elif isinstance(m, nn.MultiheadAttention):  # the caption encoder's: its input projection and
            # two sums over tokens
            sums += [m.embed_dim] + [context] * 2
    return sums


def worst_rounding(net, size, eps, context=0):
    """No two evaluations of the network can differ by more, relative to its O(1) activations (GroupNorm) and with
    layers that do not amplify errors (weights ~ 0.05-0.1): each is within u N of the exact one, N = sum(n)."""
    return eps * sum(layer_sums(net, size, context))


def probable_rounding(net, size, eps, context=0):
    """The same for N roundings modelled as independent: each evaluation within LAMBDA sqrt(N) u, so two within
    LAMBDA sqrt(N) eps."""
    return eps * LAMBDA * math.sqrt(sum(layer_sums(net, size, context)))


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3), (64, 3), (16, 4)])
def test_output_shape_matches_input_at_every_resolution(size, channels):
    net = UNet(UNetConfig(image_size=size, in_channels=channels, out_channels=2 * channels, channels=16,
                          channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(size // 2,)))
    x = torch.randn(2, channels, size, size)
    assert net(x, torch.tensor([0, 999])).shape == (2, 2 * channels, size, size)


def test_zero_initialised_output_and_time_dependence():
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1))
    x = torch.randn(3, 1, 8, 8)
    # The last conv starts at zero so the untrained network predicts eps = 0 (loss starts at E[eps^2] = 1).
    assert net(x, torch.tensor([1, 2, 3])).abs().max().item() == 0.0
    # Every residual branch is zero-initialised too, so t reaches the output only once trained.
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    # In float64 (the embedding itself stays float32), by more than rounding alone could make them differ were t
    # cut off from the output.
    net, x = net.double(), x.double()
    a, b = net(x, torch.tensor([1, 1, 1])), net(x, torch.tensor([900, 900, 900]))
    assert (a - b).abs().max().item() > worst_rounding(net, 8, EPS)


def test_timestep_embedding_is_sinusoidal():
    e = timestep_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4), rtol=0, atol=0)  # cos 0, sin 0: exact
    freqs = torch.exp(-torch.log(torch.tensor(10_000.0)) * torch.arange(4) / 4)
    # In float32 on both sides: the exponent -log(1e4) i / 4 (up to 6.9) to 2 u32 relative, which exp turns into
    # 2 * 6.9 u32 relative on freqs, plus exp's and the product's own 2 u32; cos and sin move by at most their
    # argument's error (5 freqs <= 5) and round once more.
    exponent = math.log(10_000.0) * 3 / 4
    atol = EPS32 / 2 * (5 * (2 * exponent + 2) + 1)
    torch.testing.assert_close(e[1], torch.cat([torch.cos(5 * freqs), torch.sin(5 * freqs)]), rtol=0, atol=atol)


def test_class_labels_and_the_null_label():
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, num_classes=10))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    # No label means the null label (index num_classes), the unconditional branch of guidance: the same
    # computation, so bitwise; and a real label differs by more than rounding could make it (in float64).
    torch.testing.assert_close(net(x, t), net(x, t, y=torch.tensor([10, 10])), rtol=0, atol=0)
    net64, x64 = net.double(), x.double()
    assert (net64(x64, t, y=torch.tensor([3, 3])) - net64(x64, t)).abs().max().item() > worst_rounding(net64, 8, EPS)
    plain = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2)))
    with pytest.raises(ValueError, match="unconditional"):
        plain(x, t, y=torch.tensor([1, 2]))


def test_cross_attention_uses_the_context():
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(4,), context_dim=12))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    c1, c2 = torch.randn(2, 2, 5, 12)
    # In float64, by more than rounding alone could make them differ were the context ignored.
    net, x, c1, c2 = net.double(), x.double(), c1.double(), c2.double()
    assert (net(x, t, context=c1) - net(x, t, context=c2)).abs().max().item() > worst_rounding(net, 8, EPS, context=5)
    with pytest.raises(ValueError, match="context"):
        net(x, t)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape, size", [((5, 7), None), ((4, 4), (8, 8)), ((4, 4), (7, 7))])
def test_upsample_equals_nearest_then_conv(memory_format, shape, size):
    """The phase-split upsampling is conv3x3(nearest_upsample(x)) exactly, values and gradients.

    A 3x3 window on a 2x nearest-upsampled image reads at most 2x2 input pixels, so the layer can
    run as four 2x2 convolutions at the low resolution; 4 -> 7 is not a 2x repeat and interpolates.
    """
    torch.manual_seed(0)
    up = Upsample(6).double()
    x = torch.randn(3, 6, *shape, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
    out_size = size or (2 * shape[0], 2 * shape[1])
    ours = up(x, size)
    ref = F.conv2d(F.interpolate(x, size=out_size, mode="nearest"), up.weight, up.bias, padding=1)
    # Per element: each side is a sum of at most n = 9 C + 1 terms (the phase split merges taps first: fewer),
    # so within LAMBDA sqrt(n) u times the same sum taken with absolute values, and the two within LAMBDA sqrt(n)
    # eps of it. The autograd of that absolute-value layer gives the magnitudes of the gradients' sums too (over
    # the 9 C taps and <= 4 copies for x, over the B H W outputs for the weight and the bias).
    abs_x, abs_w, abs_b = (a.detach().abs().requires_grad_() for a in (x, up.weight, up.bias))
    magnitude = F.conv2d(F.interpolate(abs_x, size=out_size, mode="nearest"), abs_w, abs_b, padding=1)
    C, (B, _, H, W) = 6, ref.shape
    assert bool(((ours - ref).abs() <= LAMBDA * math.sqrt(9 * C + 1) * EPS * magnitude).all())
    assert ours.is_contiguous(memory_format=memory_format)  # the layout the next layer expects
    g = torch.randn_like(ref)
    magnitudes = torch.autograd.grad(magnitude, (abs_x, abs_w, abs_b), g.abs())
    lengths = (9 * C + 4, B * H * W, B * H * W)
    for a, b, m, n in zip(torch.autograd.grad(ours, (x, up.weight, up.bias), g),
                          torch.autograd.grad(ref, (x, up.weight, up.bias), g), magnitudes, lengths):
        assert bool(((a - b).abs() <= LAMBDA * math.sqrt(n) * EPS * m).all())


def test_channels_last_and_contiguous_inputs_give_the_same_output():
    # Attention works in channels_last internally and hands back the caller's layout; the result
    # must not depend on the layout, and the output keeps the input's.
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(8,), context_dim=6)).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, t, ctx = (torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.tensor([3, 700]),
                 torch.randn(2, 4, 6, dtype=torch.float64))
    plain = net(x, t, context=ctx)
    net.to(memory_format=torch.channels_last)  # in place
    cl = net(x.contiguous(memory_format=torch.channels_last), t, context=ctx)
    # The layouts run different kernels, which order their sums differently (probable_rounding).
    torch.testing.assert_close(cl, plain, rtol=0, atol=probable_rounding(net, 16, EPS, context=4))
    assert plain.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)


def test_attention_projections_load_from_linear_weights():
    """Checkpoints from when the attention projections were nn.Linear ([out, in]) still load."""
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    old = {k: v[:, :, 0, 0] if k.endswith(("qkv.weight", "proj.weight")) else v for k, v in net.state_dict().items()}
    assert old["mid_attn.qkv.weight"].dim() == 2
    fresh = UNet(net.config)
    load_state_dict_strict(fresh, old, Path("old-linear-checkpoint"))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    torch.testing.assert_close(fresh(x, t), net(x, t), rtol=0, atol=0)  # the same weights, bitwise, in the same network


def randomised(net: nn.Module, std: float = 0.05) -> nn.Module:
    """``net`` in float64 with every parameter drawn afresh (a trained network's branches are not zero)."""
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=std)
    return net.double()


def test_a_fresh_spatial_transformer_block_is_the_identity():
    # Self-attention, cross-attention and feed-forward each end in a zero-initialised layer and a residual, so
    # the block adds exact zeros: x + 0 is x, bit for bit, whatever the context.
    block = Attention(16, 4, context_dim=12).double()
    x, context = torch.randn(2, 16, 4, 4, dtype=torch.float64), torch.randn(2, 5, 12, dtype=torch.float64)
    assert torch.equal(block(x, context), x)


def test_cross_attention_reads_the_context_but_not_its_padding():
    block = randomised(Attention(16, 4, context_dim=12))
    x, context = torch.randn(2, 16, 4, 4, dtype=torch.float64), torch.randn(2, 5, 12, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    out = block(x, context, mask)
    # Padded positions get -inf before the softmax, so weight exactly 0 times their (finite) values: changing
    # them changes no bit of the output.
    scrambled = context.clone()
    scrambled[0, 3:] = torch.randn(2, 12, dtype=torch.float64) * 10
    assert torch.equal(block(x, scrambled, mask), out)
    # A real token does count: by more than the rounding of two evaluations could explain.
    moved = context.clone()
    moved[0, 1] += 1.0
    assert (block(x, moved, mask) - out)[0].abs().max().item() > worst_rounding(block, 4, EPS, context=5)


def text_unet() -> tuple[UNet, Tokenizer]:
    tok = Tokenizer.build(["a large red circle to the left of a small blue square", "a green triangle"])
    config = UNetConfig(image_size=8, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                        num_res_blocks=1, attention_resolutions=(4,), context_dim=32,
                        text=TextEncoderConfig(vocab_size=tok.vocab_size, max_length=tok.max_length, text_width=32))
    return randomised(UNet(config)), tok


def test_a_padded_prompt_gives_the_output_of_the_unpadded_one():
    # The caption encoder attends only to real tokens and its positions are absolute, and the U-Net's
    # cross-attention masks the padding: so padding changes the output by rounding alone (different
    # sequence lengths may order the kernels' sums differently).
    net, tok = text_unet()
    x, t = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([10, 500])
    prompts = ["a green triangle", "a small red square"]
    padded = tok.encode(prompts)
    short = tok.encode(prompts, length=5)  # the start token and the 4 words of the longer prompt
    assert padded.shape[1] > short.shape[1]
    bound = worst_rounding(net, 8, EPS, context=padded.shape[1])
    assert (net(x, t, tokens=padded) - net(x, t, tokens=short)).abs().max().item() <= bound
    # Sampling runs in eval mode without gradients, where PyTorch's transformer layers take another path.
    with torch.no_grad():
        net.eval()
        assert (net(x, t, tokens=padded) - net(x, t, tokens=short)).abs().max().item() <= bound
        net.train()
    # ... and the prompt itself matters, by more than that bound.
    other = tok.encode(["a blue circle", "a large green square"])
    assert (net(x, t, tokens=other) - net(x, t, tokens=padded)).abs().max().item() > bound


def test_no_prompt_is_the_empty_prompt_and_a_text_unet_refuses_a_raw_context():
    net, tok = text_unet()
    x, t = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([10, 500])
    empty = tok.encode(["", ""])
    assert ((net(x, t) - net(x, t, tokens=empty)).abs().max().item()
            <= worst_rounding(net, 8, EPS, context=empty.shape[1]))
    with pytest.raises(ValueError, match="tokens, not context"):
        net(x, t, context=torch.zeros(2, 3, 32, dtype=torch.float64))
    plain = UNet(UNetConfig(image_size=8, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2)))
    with pytest.raises(ValueError, match="no tokens"):
        plain(x.float(), t, tokens=empty)


def test_caption_encoder_output_mask_and_length_limit():
    encoder = CaptionEncoder(TextEncoderConfig(vocab_size=10, max_length=6, text_width=16, text_layers=1, text_heads=2))
    tokens = torch.tensor([[1, 4, 5, 0, 0, 0], [1, 3, 0, 0, 0, 0]])
    context, mask = encoder(tokens)
    assert context.shape == (2, 6, 16) and torch.equal(mask, tokens != 0)
    with pytest.raises(ValueError, match="at most 6"):
        encoder(torch.ones(1, 7, dtype=torch.long))


def sr_unet() -> UNet:
    config = UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2),
                        num_res_blocks=1, attention_resolutions=(4,), low_res_channels=1)
    return randomised(UNet(config))


def test_the_low_resolution_image_and_its_level_reach_a_super_resolution_unet():
    net = sr_unet()
    x, t = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([10, 500])
    low, level = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0.0, 0.2])
    out = net(x, t, low_res=low, low_res_level=level)
    bound = worst_rounding(net, 8, EPS)
    assert (net(x, t, low_res=low + 0.5, low_res_level=level) - out).abs().max().item() > bound
    assert (net(x, t, low_res=low, low_res_level=level + 0.3) - out).abs().max().item() > bound
    # No level means s = 0, bit for bit.
    zero = net(x, t, low_res=low, low_res_level=torch.zeros(2))
    assert torch.equal(net(x, t, low_res=low), zero)
    with pytest.raises(ValueError, match="super-resolves"):
        net(x, t)
    plain = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2)))
    with pytest.raises(ValueError, match="not a super-resolution stage"):
        plain(x.float(), t, low_res=low.float())


def test_the_concatenation_keeps_the_layout_and_the_dtype():
    # The upsampled condition is cast to x's dtype and laid out like it: a channels_last input keeps the
    # convolutions on their channels_last path and gives the contiguous input's output (to rounding).
    net = sr_unet()
    x, t = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([10, 500])
    low = torch.randn(2, 1, 4, 4, dtype=torch.float32)  # another dtype than x
    plain = net(x, t, low_res=low)
    assert plain.dtype == torch.float64 and plain.is_contiguous()
    net.to(memory_format=torch.channels_last)
    cl = net(x.contiguous(memory_format=torch.channels_last), t, low_res=low)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, plain, rtol=0, atol=probable_rounding(net, 8, EPS))


@pytest.mark.parametrize("low, high", [(7, 14), (14, 28), (16, 32), (32, 64)])
def test_super_resolution_at_every_ratio_the_product_uses(low, high):
    # Odd sizes (7 -> 14, whose U-Net levels are 14, 7, 4) take the interpolating upsampling path.
    net = UNet(UNetConfig(image_size=high, in_channels=3, out_channels=6, channels=16, channel_mult=(1, 2, 2),
                          num_res_blocks=1, attention_resolutions=(high // 2,), low_res_channels=3))
    out = net(torch.randn(2, 3, high, high), torch.tensor([1, 900]), low_res=torch.randn(2, 3, low, low),
              low_res_level=torch.tensor([0.0, 0.3]))
    assert out.shape == (2, 6, high, high)


@pytest.mark.parametrize("conv", ["direct", "auto"])
def test_gradient_checkpointing_keeps_the_gradients_and_holds_far_less(conv):
    """Recomputing each residual block in the backward pass is the same function with the same gradients; what
    autograd holds between the passes (every tensor saved for backward, counted by a saved-tensors hook) shrinks
    to the blocks' inputs and the few layers outside them. ``auto`` layers measure their kernel inside a
    checkpointed block on the first pass (64 channels at 8x8 on CPU), which must not disturb the recomputation."""
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, in_channels=3, out_channels=3, channels=64, channel_mult=(1, 1),
                          attention_resolutions=(), conv=conv))
    with torch.no_grad():
        for p in net.parameters():  # the output layers start at zero: make every gradient non-trivial
            p.add_(0.02 * torch.randn_like(p))
    x, t = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([3, 300, 600, 900])

    def run(on: bool) -> tuple[list[torch.Tensor], int]:
        net.set_gradient_checkpointing(on)
        net.zero_grad()
        held = []

        def pack(tensor):
            held.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = net(x, t).pow(2).mean()
        loss.backward()
        return [p.grad.clone() for p in net.parameters()], sum(held)

    plain, held_plain = run(False)
    recomputed, held_checkpointed = run(True)
    for a, b in zip(plain, recomputed):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
    assert held_checkpointed < 0.3 * held_plain


@pytest.mark.parametrize("size, mult, attend", [(8, (1, 2), (4,)), (28, (1, 2), (4,)), (28, (1, 2), (14,)),
                                                (28, (1, 2, 2), (7,)), (27, (1, 2, 2), (7,)), (32, (1, 2), ())])
def test_the_attention_note_speaks_exactly_when_only_the_middle_block_attends(size, mult, attend):
    """level_resolutions() must be the walk the network itself takes (halving, rounding up), so the note is
    given exactly when the built network has no attention outside its middle block."""
    config = UNetConfig(image_size=size, in_channels=1, out_channels=1, channels=8, channel_mult=mult,
                        num_res_blocks=1, attention_resolutions=attend, num_heads=1)
    net = UNet(config)
    outside_middle = sum(isinstance(m, Attention) for m in net.modules()) - 1  # net.mid_attn
    note = config.attention_note()
    assert (note is not None) == (outside_middle == 0)
    if note is not None:
        assert ", ".join(map(str, config.level_resolutions())) in note


def test_a_residual_blocks_embedding_scales_and_shifts_the_normalised_activations():
    """Scale-shift norm (AdaGN, Dhariwal & Nichol 2021 §3; improved-diffusion's use_scale_shift_norm): the timestep
    embedding's projection e = [s, b] enters the second half of a residual block as GroupNorm(h) (1 + s) + b, so that
    e = 0 is the plain normalisation. The projection's bias is set to chosen s, b (its weight zero) and the zero-
    initialised output convolution given weights; the block is compared in float64 with the formula written out."""
    torch.manual_seed(0)
    block = ResBlock(4, 4, emb_dim=3, dropout=0.0, scale_shift=True, conv="direct").double().eval()
    with torch.no_grad():
        block.conv2.weight.normal_(0, 0.3)
        block.emb.weight.zero_()
        block.emb.bias.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0, 0.3, -0.7, 0.0, 0.2], dtype=torch.float64))
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    emb = torch.randn(2, 3, dtype=torch.float64)
    scale = torch.tensor([0.5, -0.25, 1.0, 0.0], dtype=torch.float64)[None, :, None, None]
    shift = torch.tensor([0.3, -0.7, 0.0, 0.2], dtype=torch.float64)[None, :, None, None]
    with torch.no_grad():
        h = block.norm2(block.conv1(F.silu(block.norm1(x)))) * (1 + scale) + shift
        expected = x + block.conv2(F.silu(h))
        torch.testing.assert_close(block(x, emb), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, mult, attend", [(28, (1, 2, 2, 2), (7,)), (28, (1, 2, 2, 2), (14,)), (7, (1, 2), (7,)),
                                                (28, (1, 2, 2), (7,)), (32, (1, 2, 2), (16,))])
def test_each_level_on_the_way_up_attends_exactly_where_its_mirror_on_the_way_down_does(size, mult, attend):
    """ADM's U-Net is symmetric: up level l (which takes level l's skips) attends iff down level l does, by that
    level's resolution. Odd sizes round up on the way down (28 -> 14 -> 7 -> 4), so doubling back from the last
    level (4 -> 8 -> 16) would name other resolutions and leave the up path without the attention asked for."""
    net = UNet(UNetConfig(image_size=size, in_channels=1, out_channels=1, channels=8, channel_mult=mult,
                          num_res_blocks=1, attention_resolutions=attend, num_heads=1))
    down = [[isinstance(a, Attention) for a in level.attentions] for level in net.down.levels]
    up = [[isinstance(a, Attention) for a in level.attentions] for level in reversed(net.up)]
    assert [any(d) for d in down] == [any(u) for u in up] == [r in attend for r in net.config.level_resolutions()]
    assert all(all(u) == any(u) for u in up)


@pytest.mark.parametrize("size, mult, attend, up_levels", [(14, (1, 2, 2), (16,), [True, False, False]),
                                                           (28, (1, 2, 2, 2), (7,), [False, False, False, False]),
                                                           (32, (1, 2, 2), (16,), [False, True, False])])
def test_runs_saved_before_the_mirror_keep_their_doubled_way_up(size, mult, attend, up_levels):
    """``up_attention="doubled"`` rebuilds the way up of runs saved before the mirror (so their weights load): its
    levels attend by the last level's resolution doubled back (14 -> 7 -> 4 went up as 4, 8, 16), which for even
    sizes is the mirror itself. ``up_levels``: whether each level, first to last, attends on the way up."""
    config = UNetConfig(image_size=size, in_channels=1, out_channels=1, channels=8, channel_mult=mult, num_res_blocks=1,
                        attention_resolutions=attend, num_heads=1, up_attention="doubled")
    up = [any(isinstance(a, Attention) for a in level.attentions) for level in reversed(UNet(config).up)]
    assert up == up_levels
