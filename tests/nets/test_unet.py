"""The U-Net: shapes at every resolution the product uses, conditioning, and its embedding."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gaussdiff.training.checkpoint import load_state_dict_strict
from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.nets.unet import Upsample, timestep_embedding


@pytest.mark.parametrize("size, channels", [(8, 1), (28, 1), (32, 3), (64, 3), (16, 4)])
def test_output_shape_matches_input_at_every_resolution(size, channels):
    net = UNet(UNetConfig(image_size=size, in_channels=channels, out_channels=2 * channels, channels=16,
                          channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(size // 2,)))
    x = torch.randn(2, channels, size, size)
    assert net(x, torch.tensor([0, 999])).shape == (2, 2 * channels, size, size)


def test_zero_initialised_output_and_time_dependence():
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2), num_res_blocks=1))
    x = torch.randn(3, 1, 8, 8)
    # The last conv starts at zero so the untrained network predicts eps = 0 (loss starts at E[eps^2] = 1).
    assert net(x, torch.tensor([1, 2, 3])).abs().max().item() == 0.0
    # Every residual branch is zero-initialised too, so t reaches the output only once trained.
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    a, b = net(x, torch.tensor([1, 1, 1])), net(x, torch.tensor([900, 900, 900]))
    assert (a - b).abs().max().item() > 1e-4


def test_timestep_embedding_is_sinusoidal():
    e = timestep_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-torch.log(torch.tensor(10_000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(e[1], torch.cat([torch.cos(5 * freqs), torch.sin(5 * freqs)]))


def test_class_labels_and_the_null_label():
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, num_classes=10))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    # No label means the null label (index num_classes), the unconditional branch of guidance.
    torch.testing.assert_close(net(x, t), net(x, t, y=torch.tensor([10, 10])))
    assert (net(x, t, y=torch.tensor([3, 3])) - net(x, t)).abs().max().item() > 1e-5
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
    assert (net(x, t, context=c1) - net(x, t, context=c2)).abs().max().item() > 1e-5
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
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert ours.is_contiguous(memory_format=memory_format)  # the layout the next layer expects
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, (x, up.weight, up.bias), g),
                    torch.autograd.grad(ref, (x, up.weight, up.bias), g)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_channels_last_and_contiguous_inputs_give_the_same_output():
    # Attention works in channels_last internally and hands back the caller's layout; the result
    # must not depend on the layout, and the output keeps the input's.
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                          num_res_blocks=1, attention_resolutions=(8,), context_dim=6)).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, t, ctx = torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.tensor([3, 700]), torch.randn(2, 4, 6, dtype=torch.float64)
    plain = net(x, t, context=ctx)
    net.to(memory_format=torch.channels_last)  # in place
    cl = net(x.contiguous(memory_format=torch.channels_last), t, context=ctx)
    torch.testing.assert_close(cl, plain, rtol=0, atol=1e-12)
    assert plain.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)


def test_attention_projections_load_from_linear_weights():
    """Checkpoints from when the attention projections were nn.Linear ([out, in]) still load."""
    net = UNet(UNetConfig(image_size=8, in_channels=1, out_channels=1, channels=16, channel_mult=(1, 2), num_res_blocks=1))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    old = {k: v[:, :, 0, 0] if k.endswith(("qkv.weight", "proj.weight")) else v for k, v in net.state_dict().items()}
    assert old["mid_attn.qkv.weight"].dim() == 2
    fresh = UNet(net.config)
    load_state_dict_strict(fresh, old, Path("old-linear-checkpoint"))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    torch.testing.assert_close(fresh(x, t), net(x, t))
