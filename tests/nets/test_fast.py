"""The sampling wrapper computes what the plain network computes: eagerly on CPU, and from replayed CUDA graphs on
CUDA (where the CUDA tests run; they skip elsewhere)."""

import pytest
import torch

from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.nets.fast import Fast

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small_unet(**kwargs) -> UNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, in_channels=3, out_channels=3, channels=16, channel_mult=(1, 2),
                          attention_resolutions=(4,), num_heads=2, **kwargs)).eval()
    with torch.no_grad():  # the output layers start at zero, which would make every comparison trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def inputs(device="cpu", batch=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 8, 8, generator=g, dtype=dtype).to(device)
    t = torch.randint(0, 1000, (batch,), generator=g).to(device)
    return x, t


@torch.no_grad()
def test_on_cpu_the_wrapper_is_the_network():
    net = small_unet()
    x, t = inputs()
    expected = net(x, t)
    assert torch.equal(Fast(net)(x, t), expected)  # cuda_graph has no effect on CPU
    assert torch.allclose(Fast(net, channels_last=True)(x, t), expected, atol=1e-5)


@torch.no_grad()
def test_bf16_returns_the_input_dtype_close_to_fp32():
    net = small_unet()
    x, t = inputs()
    out = Fast(net, bf16=True)(x, t)
    assert out.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: about 0.4% of each product, averaged down over the network's sums
    assert (out - net(x, t)).abs().max() < 0.1 * net(x, t).abs().max()


@torch.no_grad()
def test_conditions_pass_through():
    net = small_unet(num_classes=5)
    x, t = inputs()
    y = torch.tensor([0, 1, 4, 2])
    assert torch.equal(Fast(net)(x, t, y=y), net(x, t, y=y))


@CUDA
@torch.no_grad()
def test_replayed_graphs_equal_plain_calls_for_every_shape_and_keep_earlier_outputs():
    net = small_unet(num_classes=5).cuda()
    fast = Fast(net, cuda_graph=True)
    outs = []
    for batch in (4, 4, 3, 4):  # capture, replay, a second shape, replay the first again
        x, t = inputs("cuda", batch)
        y = torch.arange(batch, device="cuda") % 5
        outs.append((fast(x, t, y=y), net(x, t, y=y)))
    assert len(fast._graphs) == 2
    for got, expected in outs:  # an earlier output is not overwritten by later replays
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    x, t = inputs("cuda", 4)
    with torch.enable_grad():  # gradients asked for: the plain network
        assert torch.allclose(fast(x, t, y=torch.zeros(4, dtype=torch.long, device="cuda")),
                              net(x, t, y=torch.zeros(4, dtype=torch.long, device="cuda")), atol=1e-5)


@CUDA
@torch.no_grad()
def test_bf16_channels_last_graphs_on_cuda_close_to_fp32():
    net = small_unet().cuda()
    x, t = inputs("cuda", 8)
    expected = net(x, t)
    got = Fast(net, bf16=True, channels_last=True)(x, t)
    assert got.dtype == torch.float32 and (got - expected).abs().max() < 0.1 * expected.abs().max()


def test_compile_auto_compiles_only_large_runs_on_cuda():
    from gaussdiff.nets.fast import COMPILE_PAYS, sampling_network

    net = small_unet()
    assert sampling_network(net, compile="auto", evaluations=10 * COMPILE_PAYS).compile == "off"  # CPU
    assert not sampling_network(net).bf16  # auto precision on CPU: fp32


@CUDA
@torch.no_grad()
def test_compiled_reduce_overhead_equals_plain_calls_and_keeps_earlier_outputs():
    net = small_unet().cuda()
    fast = Fast(net, compile="reduce-overhead")
    assert not fast.cuda_graph  # inductor's graphs, not ours
    outs = []
    for batch in (4, 4, 4):
        x, t = inputs("cuda", batch)
        x = x + len(outs)  # a different input each call
        outs.append((fast(x, t), net(x, t)))
    for got, expected in outs:
        assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)
