"""F(4x4, 3x3) Winograd convolution: its transforms, its adjoints and its agreement with the direct convolution."""

import pytest
import torch
import torch.nn.functional as F

from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.nets.kernels import winograd
from gaussdiff.nets.kernels.winograd import Conv3x3, winograd_conv3x3

f64 = torch.float64


def rand(*shape, dtype=f64, generator=None):
    return torch.randn(*shape, dtype=dtype, generator=generator)


def test_one_dimensional_transforms_compute_a_correlation():
    # Lavin & Gray Eq. 5: A^T [(G g) * (B^T d)] is the valid correlation of 6 inputs with 3 taps.
    g_ = torch.Generator().manual_seed(0)
    d, g = rand(6, 10, generator=g_), rand(3, 10, generator=g_)
    V = [torch.empty(10, dtype=f64) for _ in range(6)]
    winograd._input_1d(list(d), V, [torch.empty(10, dtype=f64) for _ in range(2)])
    Gg = torch.tensor(winograd.G, dtype=f64) @ g
    y = [torch.empty(10, dtype=f64) for _ in range(4)]
    winograd._output_1d([Gg[k] * V[k] for k in range(6)], y, [torch.empty(10, dtype=f64) for _ in range(4)])
    expected = torch.stack([sum(d[i + k] * g[k] for k in range(3)) for i in range(4)])
    torch.testing.assert_close(torch.stack(y), expected, rtol=1e-12, atol=1e-12)


def test_transforms_and_their_adjoints_are_transposes():
    # <T a, b> = <a, T^T b> for each transform and the adjoint the backward pass uses.
    g_ = torch.Generator().manual_seed(1)
    b, nH, nW, C = 2, 2, 3, 5
    x = rand(b, 4 * nH, 4 * nW, C, generator=g_)
    padded = F.pad(x, (0, 0, 1, 1, 1, 1))
    V, grad_V = torch.empty(6, 6, b, nH, nW, C, dtype=f64), rand(6, 6, b, nH, nW, C, generator=g_)
    winograd.input_transform(padded, V)
    grad_x = torch.empty_like(x)
    winograd.input_transform_adjoint(grad_V, grad_x)
    torch.testing.assert_close((V * grad_V).sum(), (x * grad_x).sum(), rtol=1e-12, atol=0)

    M, grad_y = rand(6, 6, b, nH, nW, C, generator=g_), rand(b, nH, 4, nW, 4, C, generator=g_)
    y, grad_M = torch.empty_like(grad_y), torch.empty_like(M)
    winograd.output_transform(M, y)
    winograd.output_transform_adjoint(grad_y, grad_M)
    torch.testing.assert_close((y * grad_y).sum(), (M * grad_M).sum(), rtol=1e-12, atol=0)

    w, grad_U = rand(4, C, 3, 3, generator=g_), rand(36, C, 4, generator=g_)
    U, grad_w = winograd.filter_transform(w), winograd.filter_transform_adjoint(grad_U)
    torch.testing.assert_close((U * grad_U).sum(), (w * grad_w).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("B, C, K, H, W, bias, layout", [
    (2, 3, 5, 4, 4, True, torch.contiguous_format),
    (3, 8, 6, 12, 8, False, torch.channels_last),
    (5, 16, 24, 16, 16, True, torch.channels_last),
])
def test_values_and_gradients_equal_the_direct_convolution(monkeypatch, B, C, K, H, W, bias, layout):
    # A tiny chunk budget forces several chunks and a short last one (5 images, 2 per chunk).
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 2 * 36 * (H // 4) * (W // 4) * max(C, K) * 8)
    assert [b for _, b in winograd._chunks(B, H, W, max(C, K), 8)] == [2] * (B // 2) + [1] * (B % 2)
    g_ = torch.Generator().manual_seed(2)
    x = rand(B, C, H, W, generator=g_).contiguous(memory_format=layout).requires_grad_()
    w = rand(K, C, 3, 3, generator=g_).requires_grad_()
    b = rand(K, generator=g_).requires_grad_() if bias else None
    y, y_ref = winograd_conv3x3(x, w, b), F.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    grad_y = rand(B, K, H, W, generator=g_)
    inputs = [x, w] + ([b] if bias else [])
    for got, ref in zip(torch.autograd.grad(y, inputs, grad_y), torch.autograd.grad(y_ref, inputs, grad_y)):
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)


def test_gradients_against_finite_differences():
    g_ = torch.Generator().manual_seed(3)
    x = rand(2, 2, 4, 8, generator=g_).requires_grad_()
    w = rand(3, 2, 3, 3, generator=g_).requires_grad_()
    b = rand(3, generator=g_).requires_grad_()
    assert torch.autograd.gradcheck(winograd_conv3x3, (x, w, b))


def test_fp32_error_is_close_to_the_direct_convolutions_rounding():
    # Transforms with coefficients up to 8 (and 1/24 on the filter) cost a few bits over direct rounding.
    g_ = torch.Generator().manual_seed(4)
    x, w = rand(4, 64, 16, 16, generator=g_), rand(64, 64, 3, 3, generator=g_) / 24
    exact = F.conv2d(x, w, padding=1)
    rel = lambda y: ((y.double() - exact).norm() / exact.norm()).item()  # noqa: E731
    direct, wino = rel(F.conv2d(x.float(), w.float(), padding=1)), rel(winograd_conv3x3(x.float(), w.float()))
    assert wino < 1e-5
    assert wino < 20 * direct


def test_sizes_that_are_not_multiples_of_four_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        winograd_conv3x3(torch.randn(1, 2, 6, 8), torch.randn(3, 2, 3, 3))


@pytest.mark.parametrize("algorithm, channels, size, dtype, autocast, grad, expected", [
    ("auto", 64, 8, torch.float32, False, True, True),     # wide enough, large enough, trained: Winograd
    ("auto", 64, 8, torch.float32, False, False, False),   # a forward pass alone: the direct kernel
    ("auto", 32, 8, torch.float32, False, True, False),    # narrow: the transforms cost more than they save
    ("auto", 64, 4, torch.float32, False, True, False),    # one tile per image
    ("auto", 64, 28, torch.float32, False, True, True),
    ("auto", 64, 14, torch.float32, False, True, False),   # 14 is not a multiple of 4
    ("auto", 64, 8, torch.bfloat16, False, True, False),   # Winograd computes in fp32/fp64 only
    ("auto", 64, 8, torch.float32, True, True, False),     # under autocast the bf16 direct kernels run
    ("winograd", 16, 4, torch.float32, False, False, True),
    ("winograd", 16, 6, torch.float32, False, True, False),
    ("direct", 64, 16, torch.float32, False, True, False),
])
def test_conv3x3_chooses_its_algorithm_and_computes_the_same_function(algorithm, channels, size, dtype, autocast, grad,
                                                                      expected):
    torch.manual_seed(5)
    conv = Conv3x3(channels, channels, algorithm).to(dtype)
    reference = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dtype)
    reference.load_state_dict(conv.state_dict())  # same parameters, same keys
    x = torch.randn(2, channels, size, size, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
        assert conv.uses_winograd(x) == expected
        y, y_ref = conv(x), reference(x)
    tol = 1e-4 if y.dtype == torch.float32 else 2e-2
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)


def test_the_unet_computes_the_same_function_and_gradients_with_either_algorithm():
    cfg = dict(image_size=16, in_channels=3, out_channels=3, channels=8, channel_mult=(1, 2),
               num_res_blocks=1, attention_resolutions=(8,))
    torch.manual_seed(6)
    wino = UNet(UNetConfig(**cfg, conv="winograd")).double()
    for p in wino.parameters():  # the residual branches and the output start at zero: draw them all
        torch.nn.init.normal_(p, std=0.1)
    direct = UNet(UNetConfig(**cfg, conv="direct")).double()
    direct.load_state_dict(wino.state_dict())
    assert any(m.uses_winograd(torch.zeros(1, 8, 16, 16, dtype=f64)) for m in wino.modules() if isinstance(m, Conv3x3))
    x, t = torch.randn(4, 3, 16, 16, dtype=f64), torch.tensor([0, 10, 500, 999])
    out_w, out_d = wino(x, t), direct(x, t)
    assert out_d.abs().max() > 0.1
    torch.testing.assert_close(out_w, out_d, rtol=1e-10, atol=1e-10)
    out_w.square().sum().backward()
    out_d.square().sum().backward()
    for (name, pw), pd in zip(wino.named_parameters(), direct.parameters()):
        torch.testing.assert_close(pw.grad, pd.grad, rtol=1e-9, atol=1e-9, msg=name)
