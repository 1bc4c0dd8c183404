"""F(4x4, 3x3) Winograd convolution: its transforms, its adjoints and its agreement with the direct convolution."""

import pytest
import torch
import torch.nn.functional as F

from gaussdiff.nets import UNet, UNetConfig
from gaussdiff.nets.kernels import winograd
from gaussdiff.nets.kernels.winograd import Conv3x3, winograd_conv3x3

f64 = torch.float64
EPS = torch.finfo(f64).eps  # 2 u: one correctly rounded float64 operation errs by at most u = EPS / 2
# Lavin & Gray's data and output transforms (as in winograd's docstrings); G is the module's own.
BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=f64)
AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=f64)
G = torch.tensor(winograd.G, dtype=f64)


def rand(*shape, dtype=f64, generator=None):
    return torch.randn(*shape, dtype=dtype, generator=generator)


def randint(*shape, generator=None):
    """Small integers as float64: the integer transforms B^T, A^T and their sums are then exact."""
    return torch.randint(-8, 9, shape, generator=generator).to(f64)


def winograd_magnitude(x, w, b=None):
    """F(4x4, 3x3) run on absolute values, |A^T| [sum_c (|G| |g| |G|^T) * (|B^T| |d| |B|)] |A| + |b|, ``[B, K, H, W]``.

    Every rounding of the Winograd convolution errs by at most u times a partial result bounded by this
    (Higham's first-order analysis), and the direct convolution's partial results by less (|w| * |x| + |b|:
    the transforms reproduce each tap's coefficient exactly, so their absolute values add up to at least it).
    """
    B, C, H, W = x.shape
    d = F.pad(x.abs(), (1, 1, 1, 1)).unfold(2, 6, 4).unfold(3, 6, 4)  # [B, C, H/4, W/4, 6, 6] tiles
    M = torch.einsum("bchwij,kcij->bkhwij", BT.abs() @ d @ BT.abs().T, G.abs() @ w.abs() @ G.abs().T)
    y = (AT.abs() @ M @ AT.abs().T).permute(0, 1, 2, 4, 3, 5).reshape(B, -1, H, W)
    return y if b is None else y + b.abs().reshape(1, -1, 1, 1)


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
    # At most 3 roundings in B^T d, 4 in G g (3 products and sums, G's fractions rounded), 1 in the product and
    # 3 in A^T, each on a partial result bounded by the same computation on absolute values; the direct sum
    # takes 3 on smaller ones: (11 + 3) u = 7 eps times it.
    magnitude = AT.abs() @ ((G.abs() @ g.abs()) * (BT.abs() @ d.abs()))
    assert bool(((torch.stack(y) - expected).abs() <= 7 * EPS * magnitude).all())


def test_transforms_and_their_adjoints_are_transposes():
    # <T a, b> = <a, T^T b> for each transform and the adjoint the backward pass uses.
    g_ = torch.Generator().manual_seed(1)
    b, nH, nW, C = 2, 2, 3, 5
    # B^T and A^T hold small integers (and the adjoints halves of them): on integer data every value and every
    # sum here stays an integer far below 2^53, so both sides are exact and must agree exactly.
    x = randint(b, 4 * nH, 4 * nW, C, generator=g_)
    padded = F.pad(x, (0, 0, 1, 1, 1, 1))
    V, grad_V = torch.empty(6, 6, b, nH, nW, C, dtype=f64), randint(6, 6, b, nH, nW, C, generator=g_)
    winograd.input_transform(padded, V)
    grad_x = torch.empty_like(x)
    winograd.input_transform_adjoint(grad_V, grad_x)
    torch.testing.assert_close((V * grad_V).sum(), (x * grad_x).sum(), rtol=0, atol=0)

    M, grad_y = randint(6, 6, b, nH, nW, C, generator=g_), randint(b, nH, 4, nW, 4, C, generator=g_)
    y, grad_M = torch.empty_like(grad_y), torch.empty_like(M)
    winograd.output_transform(M, y)
    winograd.output_transform_adjoint(grad_y, grad_M)
    torch.testing.assert_close((y * grad_y).sum(), (M * grad_M).sum(), rtol=0, atol=0)

    # G holds fractions, so this one rounds. Both sides are sum G_ak w_kl G_bl grad_U_ab (the same rounded G),
    # each U entry a sum of 9 products of three (<= 10 roundings) and each grad_w entry of 36 (<= 37), then 720
    # and 180 terms summed: within (730 + 217) u of the same sum of absolute values S. grad_U is U scaled by
    # positive weights, so that <U, grad_U> does not cancel and the bound is relative to it.
    w = rand(4, C, 3, 3, generator=g_)
    U = winograd.filter_transform(w)
    grad_U = U * (0.5 + torch.rand(36, C, 4, generator=g_, dtype=f64))
    grad_w = winograd.filter_transform_adjoint(grad_U)
    S = (torch.einsum("ak,ockl,bl->abco", G.abs(), w.abs(), G.abs()).reshape(36, C, 4) * grad_U.abs()).sum()
    assert abs((U * grad_U).sum().item() - (w * grad_w).sum().item()) <= (730 + 217) * EPS / 2 * S.item()


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
    # Not derived: the largest errors seen are 4e-13 (values) and 1.2e-12 (gradients), a few times under these.
    # A first-order bound from the intermediate values (u times each stage's partial results, carried through
    # |A^T| ... |A|) is 5e-12..4e-11 for these shapes, and winograd_magnitude's bound 5-20x more: the transforms'
    # coefficients (up to 8 in A^T, 5 in B^T) make the worst case far larger than what the rounding does.
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    grad_y = rand(B, K, H, W, generator=g_)
    inputs = [x, w] + ([b] if bias else [])
    for got, ref in zip(torch.autograd.grad(y, inputs, grad_y), torch.autograd.grad(y_ref, inputs, grad_y)):
        torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)  # not derived either (see above)


def test_gradients_against_finite_differences():
    g_ = torch.Generator().manual_seed(3)
    x = rand(2, 2, 4, 8, generator=g_).requires_grad_()
    w = rand(3, 2, 3, 3, generator=g_).requires_grad_()
    b = rand(3, generator=g_).requires_grad_()
    # The convolution is linear in each single coordinate, so central differences are exact for any step: with
    # eps = 1 only rounding is left. Every evaluation (at x, w, b moved by +-1) and every Jacobian entry of the
    # backward pass is within k u of winograd_magnitude at |x| + 1, |w| + 1, |b| + 1, k <= 64 the longest chain
    # (the weight gradient: the transforms' ~50 roundings and 4 tiles summed; the forward pass: 2 + 21).
    magnitude = winograd_magnitude(x.detach().abs() + 1, w.detach().abs() + 1, b.detach().abs() + 1).max().item()
    assert torch.autograd.gradcheck(winograd_conv3x3, (x, w, b), eps=1.0, atol=64 * EPS * magnitude, rtol=0)


def test_fp32_error_is_close_to_the_direct_convolutions_rounding():
    # Transforms with coefficients up to 8 (and 1/24 on the filter) cost a few bits over direct rounding.
    g_ = torch.Generator().manual_seed(4)
    x, w = rand(4, 64, 16, 16, generator=g_), rand(64, 64, 3, 3, generator=g_) / 24
    exact = F.conv2d(x, w, padding=1)
    rel = lambda y: ((y.double() - exact).norm() / exact.norm()).item()  # noqa: E731
    direct, wino = rel(F.conv2d(x.float(), w.float(), padding=1)), rel(winograd_conv3x3(x.float(), w.float()))
    # Not derived: wino is ~2e-6 and direct ~4e-7 here. The bounds that can be derived are far looser (85 u32
    # times winograd_magnitude is 8e-3 relative for these 64 channels, 5e-3 with independent roundings), and the
    # ratio of two rounding errors has no closed form short of modelling every rounding of both algorithms.
    assert wino < 1e-5
    assert wino < 20 * direct


def test_sizes_that_are_not_multiples_of_four_are_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        winograd_conv3x3(torch.randn(1, 2, 6, 8), torch.randn(3, 2, 3, 3))


@pytest.mark.parametrize("algorithm, channels, size, dtype, autocast, grad, expected", [
    ("auto", 64, 8, torch.float32, False, True, "measured"),  # trained on CPU: whichever measures faster
    ("auto", 64, 8, torch.float32, False, False, False),   # a forward pass alone: the direct kernel
    ("auto", 32, 8, torch.float32, False, True, False),    # narrow: the direct kernel, unmeasured
    ("auto", 64, 4, torch.float32, False, True, False),    # one tile per image: likewise
    ("auto", 64, 28, torch.float32, False, True, "measured"),
    ("auto", 64, 14, torch.float32, False, True, False),   # 14 is not a multiple of 4
    ("auto", 64, 8, torch.bfloat16, False, True, False),   # Winograd computes in fp32/fp64 only
    ("auto", 64, 8, torch.float32, True, True, False),     # under autocast the bf16 direct kernels run
    ("winograd", 16, 4, torch.float32, False, False, True),
    ("winograd", 16, 6, torch.float32, False, True, False),
    ("direct", 64, 16, torch.float32, False, True, False),
])
def test_conv3x3_chooses_its_algorithm_and_computes_the_same_function(algorithm, channels, size, dtype, autocast, grad,
                                                                      expected, monkeypatch):
    if expected == "measured":  # the measurement's verdict stands in here (its own test is below)
        monkeypatch.setattr(Conv3x3, "measure", lambda self, x: True)
        expected = True
    torch.manual_seed(5)
    conv = Conv3x3(channels, channels, algorithm).to(dtype)
    reference = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dtype)
    reference.load_state_dict(conv.state_dict())  # same parameters, same keys
    x = torch.randn(2, channels, size, size, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
        assert conv.uses_winograd(x) == expected
        y, y_ref = conv(x), reference(x)
    if not expected:
        # The direct path is the very F.conv2d call nn.Conv2d makes, with the same parameters: bitwise.
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    else:
        # Not derived: Winograd against the direct kernel in float32, largest difference seen 1.8e-5 on outputs
        # up to 2.7 (see test_fp32_error_is_close_to_the_direct_convolutions_rounding for why no bound is).
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)


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
    assert out_d.abs().max() > 0.1  # not a tolerance: the outputs are 1e9 times the one below, so it compares something
    # Not derived: the layers' Winograd-against-direct differences (test_values_and_gradients_equal_the_direct_
    # convolution, itself empirical) carried through the network.
    torch.testing.assert_close(out_w, out_d, rtol=1e-10, atol=1e-10)
    out_w.square().sum().backward()
    out_d.square().sum().backward()
    for (name, pw), pd in zip(wino.named_parameters(), direct.parameters()):
        torch.testing.assert_close(pw.grad, pd.grad, rtol=1e-9, atol=1e-9, msg=name)  # not derived (as above)


def test_auto_measures_once_per_input_configuration_and_computes_the_same_whichever_wins(monkeypatch):
    """``auto`` times both algorithms on the first training pass of each (shape, dtype, layout), keeps the verdict,
    and never measures a forward pass alone; measuring leaves the layer's gradients alone; and the function
    computed is the direct convolution's to Winograd's fp32 rounding whichever wins."""
    torch.manual_seed(7)
    conv = Conv3x3(64, 64, "auto")
    measured = []
    real = Conv3x3.measure
    monkeypatch.setattr(Conv3x3, "measure", lambda self, x: measured.append(Conv3x3.measure_key(x)) or real(self, x))
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        conv(x)
    assert measured == []  # sampling never pays for a measurement
    conv(x).sum().backward()
    assert conv.weight.grad is not None and len(measured) == 1
    grad = conv.weight.grad.clone()
    conv(x)  # the same configuration again: the kept verdict
    assert len(measured) == 1
    for other in (torch.randn(4, 64, 8, 8), torch.randn(2, 64, 12, 12), x.double(),
                  x.contiguous(memory_format=torch.channels_last)):
        (conv.double() if other.dtype == torch.float64 else conv.float())(other)
    assert len(measured) == 5 and len(set(measured)) == 5  # batch, size, dtype and layout each measured apart
    assert set(conv.choices.values()) <= {True, False}
    conv.float()
    torch.testing.assert_close(conv.weight.grad, grad.float(), rtol=0, atol=0)  # measuring took no gradients
    reference = torch.nn.Conv2d(64, 64, 3, padding=1)
    reference.load_state_dict(conv.state_dict())
    for verdict in (True, False):
        conv.choices = {k: verdict for k in conv.choices}
        torch.testing.assert_close(conv(x), reference(x), rtol=1e-4, atol=1e-4)  # as in the test above


def test_the_verdicts_travel_with_a_checkpoint():
    """A resumed run computes with the kernels it trained with: the verdicts survive conv_choices/restore as
    plain values, and a layer or row that does not match is left to measure again."""
    from gaussdiff.nets.kernels.winograd import conv_choices, restore_conv_choices

    cfg = dict(image_size=16, in_channels=3, out_channels=3, channels=64, channel_mult=(1,), num_res_blocks=1,
               attention_resolutions=())
    a, b = UNet(UNetConfig(**cfg)), UNet(UNetConfig(**cfg))
    layers = [m for m in a.modules() if isinstance(m, Conv3x3)]
    for i, m in enumerate(layers):
        m.choices[((2, 64, 16, 16), torch.float32, i % 2 == 0)] = i % 3 == 0
    rows = conv_choices(a)
    assert len(rows) == len(layers) and all(isinstance(v, (str, list, bool)) for row in rows for v in row)
    restore_conv_choices(b, rows + [["no.such.layer", [1], "torch.float32", False, True]])
    assert [m.choices for m in b.modules() if isinstance(m, Conv3x3)] == [m.choices for m in layers]


def test_layers_sharing_a_table_measure_each_configuration_once_and_take_known_verdicts(monkeypatch):
    """Given a shared table (share_conv_verdicts), a verdict holds for every layer of the same channels in and out
    and input (shape, dtype, layout): the second such layer takes it unmeasured, a known one is taken as is, and a
    layer's own verdict (a resumed run's) wins over the table."""
    from gaussdiff.nets.kernels.winograd import measuring_seconds, share_conv_verdicts

    measured = []
    # The direct kernel's verdict keeps the layers' outputs in the input's layout (Winograd's are channels_last).
    monkeypatch.setattr(Conv3x3, "measure", lambda self, x: measured.append(self.config_key(x)) or False)
    net = torch.nn.Sequential(Conv3x3(64, 64), Conv3x3(64, 64), Conv3x3(64, 128))
    known: dict[str, bool] = {}
    share_conv_verdicts(net, known)
    x = torch.randn(2, 64, 8, 8)
    net(x).sum().backward()
    assert measured == ["64->64 [2, 64, 8, 8] float32 contiguous", "64->128 [2, 64, 8, 8] float32 contiguous"]
    assert known == dict.fromkeys(measured, False) and measuring_seconds(net) > 0
    keys = {net[0].config_key(v) for v in (x, x[:1], x.double(), x.contiguous(memory_format=torch.channels_last))}
    assert len(keys) == 4  # batch, dtype and layout each make another configuration

    fresh = torch.nn.Sequential(Conv3x3(64, 64), Conv3x3(64, 64), Conv3x3(64, 128))
    fresh[1].choices[Conv3x3.measure_key(x)] = False  # restored from a checkpoint: it wins over the table's True
    share_conv_verdicts(fresh, {measured[0]: True, measured[1]: True})
    measured.clear()
    assert [m.uses_winograd(x.clone().requires_grad_()) for m in fresh] == [True, False, True]
    assert measured == [] and measuring_seconds(fresh) == 0
