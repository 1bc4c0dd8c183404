"""3x3 convolutions by Winograd's minimal filtering algorithm F(4x4, 3x3) (Lavin & Gray 2016, §4).

A 4x4 tile of a 3x3 convolution's output, from its 6x6 input tile ``d`` and the filter ``g``, is

    Y = A^T [ (G g G^T) * (B^T d B) ] A                                        (Lavin & Gray, Eq. 8)

with ``*`` elementwise: 36 multiplies instead of 144. Summed over input channels, the elementwise
product becomes 36 independent matrix products, one per position p of the transformed 6x6 tile,
``M[p] = V[p] @ U[p]``, so the forward pass and both gradients (``dV = dM U^T``, ``dU = V^T dM``) take
4x fewer multiply-adds than the direct convolution. B^T and A^T hold the small integers of the
interpolation points 0, +-1, +-2 and infinity, so the data transforms are a few additions per element,
written out below with their common subexpressions; G holds fractions and touches only the weights.
In fp32 the result differs from the direct convolution by about 2e-6 relative (direct's own rounding
is about 4e-7), far below what training notices; in float64 the two agree to rounding.

The batch is processed a few images at a time, channels last, so that a chunk's transformed tiles
(2.25x its input) stay in cache from the transform through the matrix product to the inverse
transform; the backward pass recomputes V per chunk from the saved input instead of keeping 2.25x
the activations alive.

| symbol          | variable  | shape                                                  |
|-----------------|-----------|--------------------------------------------------------|
| x               | ``x``     | ``[B, C, H, W]``, H and W multiples of 4               |
| g               | ``weight``| ``[K, C, 3, 3]``                                       |
| d               | ``padded``| a chunk of x, channels last with a zero border: ``[b, H + 2, W + 2, C]`` |
| B^T d B         | ``V``     | ``[6, 6, b, H/4, W/4, C]``, seen as ``[36, tiles, C]`` |
| G g G^T         | ``U``     | ``[36, C, K]``                                         |
| V @ U           | ``M``     | ``[6, 6, b, H/4, W/4, K]``                             |
| A^T M A         | ``y``     | ``[B, H, W, K]``, returned as ``[B, K, H, W]`` (channels_last) |
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

ConvAlgorithm = Literal["auto", "direct", "winograd"]

# The filter transform G of F(4, 3) (Lavin & Gray, §4.2); B^T and A^T live in the functions below.
G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
# Transformed tiles per chunk, in bytes: small enough to stay in cache, large enough that the
# per-chunk call overhead stays small (bench/conv_speed.py's sweep).
CHUNK_BYTES = 4 << 20


def filter_transform(weight: Tensor) -> Tensor:
    """U = G g G^T for every filter: ``[K, C, 3, 3] -> [36, C, K]``."""
    g = weight.new_tensor(G)
    K, C = weight.shape[:2]
    return torch.einsum("ak,ockl,bl->abco", g, weight, g).reshape(36, C, K).contiguous()


def filter_transform_adjoint(grad_U: Tensor) -> Tensor:
    """The adjoint of :func:`filter_transform`: ``[36, C, K] -> [K, C, 3, 3]``."""
    g = grad_U.new_tensor(G)
    C, K = grad_U.shape[1:]
    return torch.einsum("ak,abco,bl->ockl", g, grad_U.view(6, 6, C, K), g).contiguous()


def _input_1d(d: list[Tensor], out: list[Tensor], tmp: list[Tensor]) -> None:
    """``out[k] = sum_r B^T[k, r] d[r]`` along one axis of the tile (6 -> 6), with two scratch tensors.

    B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
    """
    d0, d1, d2, d3, d4, d5 = d
    torch.add(d4, d0, alpha=4, out=out[0]).add_(d2, alpha=-5)
    torch.add(d1, d2, out=tmp[0])
    torch.add(d3, d4, out=out[1]).add_(tmp[0], alpha=-4)
    torch.sub(d1, d2, out=tmp[0])
    torch.sub(d4, d3, out=out[2]).add_(tmp[0], alpha=4)
    torch.sub(d4, d2, out=tmp[0])
    torch.sub(d3, d1, out=tmp[1])
    torch.add(tmp[0], tmp[1], alpha=2, out=out[3])
    torch.add(tmp[0], tmp[1], alpha=-2, out=out[4])
    torch.add(d5, d1, alpha=4, out=out[5]).add_(d3, alpha=-5)


def _input_1d_adjoint(v: list[Tensor], out: list[Tensor], dim: int, tmp: list[Tensor]) -> None:
    """The adjoint of the tiled :func:`_input_1d` along one axis: components -> input positions.

    ``v[k]`` holds component k of every tile along axis ``dim``. Tiles start every 4 positions and
    span 6, so padded position ``4j + q`` gathers ``sum_k B^T[k, q] v[k]`` of tile j and, for q < 2,
    ``sum_k B^T[k, q + 4] v[k]`` of tile j - 1. ``out[s]`` receives unpadded position ``4j + s``
    (padded ``4j + s + 1``), so the zero border is never formed. Four scratch tensors.
    """
    v0, v1, v2, v3, v4, v5 = v
    n = v0.shape[dim]
    s12, d12, s34, d34 = tmp
    torch.add(v1, v2, out=s12)
    torch.sub(v1, v2, out=d12)
    torch.add(v3, v4, out=s34)
    torch.sub(v3, v4, out=d34)
    # padded 4j+1: -4(v1 - v2) - 2(v3 - v4) + 4 v5 of tile j, plus v5 of tile j - 1
    torch.add(d12, d34, alpha=0.5, out=out[0]).mul_(-4).add_(v5, alpha=4)
    out[0].narrow(dim, 1, n - 1).add_(v5.narrow(dim, 0, n - 1))
    # padded 4j+2: -5 v0 - 4(v1 + v2) - (v3 + v4)
    torch.add(s34, s12, alpha=4, out=out[1]).add_(v0, alpha=5).neg_()
    # padded 4j+3: (v1 - v2) + 2(v3 - v4) - 5 v5
    torch.add(d12, d34, alpha=2, out=out[2]).add_(v5, alpha=-5)
    # padded 4j+4: v0 + (v1 + v2) + (v3 + v4) of tile j, plus 4 v0 of tile j + 1
    torch.add(s12, s34, out=out[3]).add_(v0)
    out[3].narrow(dim, 0, n - 1).add_(v0.narrow(dim, 1, n - 1), alpha=4)


def _output_1d(m: list[Tensor], out: list[Tensor], tmp: list[Tensor]) -> None:
    """``out[a] = sum_k A^T[a, k] m[k]`` (6 -> 4), with four scratch tensors.

    A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    """
    m0, m1, m2, m3, m4, m5 = m
    s12, d12, s34, d34 = tmp
    torch.add(m1, m2, out=s12)
    torch.sub(m1, m2, out=d12)
    torch.add(m3, m4, out=s34)
    torch.sub(m3, m4, out=d34)
    torch.add(m0, s12, out=out[0]).add_(s34)
    torch.add(d12, d34, alpha=2, out=out[1])
    torch.add(s12, s34, alpha=4, out=out[2])
    torch.add(d12, d34, alpha=8, out=out[3]).add_(m5)


def _output_1d_adjoint(dy: list[Tensor], out: list[Tensor], tmp: list[Tensor]) -> None:
    """``out[k] = sum_a A^T[a, k] dy[a]`` (4 -> 6), the adjoint of :func:`_output_1d`; two scratch tensors."""
    y0, y1, y2, y3 = dy
    even, odd = tmp
    out[0].copy_(y0)
    out[5].copy_(y3)
    torch.add(y0, y2, out=even)
    torch.add(y1, y3, out=odd)
    torch.add(even, odd, out=out[1])
    torch.sub(even, odd, out=out[2])
    torch.add(y0, y2, alpha=4, out=even)
    torch.add(y1, y3, alpha=4, out=odd)
    torch.add(even, odd, alpha=2, out=out[3])
    torch.add(even, odd, alpha=-2, out=out[4])


# Each 2-D transform is two passes of a 1-D one, rows then columns. A plan allocates the scratch and
# makes the views both passes read and write once, and returns the function that runs them: the chunk
# loop reuses a plan for every chunk, since building ~30 views costs as much Python time as the small
# ops themselves.


def _input_plan(padded: Tensor, V: Tensor) -> Callable[[], None]:
    """V = B^T d B from ``padded`` (see :func:`input_transform`)."""
    b, nH, nW, C = V.shape[2:]
    rows = V.new_empty(8, b, nH, padded.shape[2], C)  # six components and two scratch
    by_rows = ([padded[:, r : r + 4 * nH : 4] for r in range(6)], list(rows[:6]), list(rows[6:]))
    by_cols = ([rows[:6, :, :, c : c + 4 * nW : 4] for c in range(6)], list(V.transpose(0, 1)),
               list(V.new_empty(2, 6, b, nH, nW, C)))

    def run() -> None:
        _input_1d(*by_rows)
        _input_1d(*by_cols)

    return run


def _input_adjoint_plan(grad_V: Tensor) -> Callable[[Tensor], None]:
    """grad_V -> grad_x, the argument (see :func:`input_transform_adjoint`)."""
    b, nH, nW, C = grad_V.shape[2:]
    cols = grad_V.new_empty(6, b, nH, nW, 4, C)
    by_cols = (list(grad_V.unbind(1)), list(cols.unbind(4)), 3, list(grad_V.new_empty(4, 6, b, nH, nW, C)))
    rows, tmp = list(cols.view(6, b, nH, 4 * nW, C).unbind(0)), list(grad_V.new_empty(4, b, nH, 4 * nW, C))

    def run(grad_x: Tensor) -> None:
        _input_1d_adjoint(*by_cols)
        _input_1d_adjoint(rows, list(grad_x.view(b, nH, 4, 4 * nW, C).unbind(2)), 1, tmp)

    return run


def _output_plan(M: Tensor) -> Callable[[Tensor], None]:
    """M -> y, the argument (see :func:`output_transform`)."""
    tile = M.shape[2:]
    rows = M.new_empty(4, 6, *tile)
    by_rows = (list(M), list(rows), list(M.new_empty(4, 6, *tile)))
    cols, tmp = list(rows.unbind(1)), list(M.new_empty(4, 4, *tile))

    def run(y: Tensor) -> None:
        _output_1d(*by_rows)
        _output_1d(cols, list(y.permute(4, 2, 0, 1, 3, 5)), tmp)

    return run


def _output_adjoint_plan(grad_M: Tensor) -> Callable[[Tensor], None]:
    """grad_y, the argument -> grad_M (see :func:`output_transform_adjoint`)."""
    b, nH, nW, K = grad_M.shape[2:]
    rows = grad_M.new_empty(6, b, nH, nW, 4, K)
    rows_out, tmp = list(rows), list(grad_M.new_empty(2, b, nH, nW, 4, K))
    by_cols = (list(rows.unbind(4)), list(grad_M.transpose(0, 1)), list(grad_M.new_empty(2, 6, b, nH, nW, K)))

    def run(grad_y: Tensor) -> None:
        _output_1d_adjoint(list(grad_y.unbind(2)), rows_out, tmp)
        _output_1d_adjoint(*by_cols)

    return run


def input_transform(padded: Tensor, V: Tensor) -> None:
    """V = B^T d B for every tile: ``padded [b, 4 nH + 2, 4 nW + 2, C] -> V [6, 6, b, nH, nW, C]``."""
    _input_plan(padded, V)()


def input_transform_adjoint(grad_V: Tensor, grad_x: Tensor) -> None:
    """The adjoint of :func:`input_transform`, cropped to the interior:
    ``[6, 6, b, nH, nW, C] -> [b, 4 nH, 4 nW, C]``."""
    _input_adjoint_plan(grad_V)(grad_x)


def output_transform(M: Tensor, y: Tensor) -> None:
    """y = A^T M A for every tile: ``M [6, 6, b, nH, nW, K] -> y [b, nH, 4, nW, 4, K]``."""
    _output_plan(M)(y)


def output_transform_adjoint(grad_y: Tensor, grad_M: Tensor) -> None:
    """The adjoint of :func:`output_transform`: ``[b, nH, 4, nW, 4, K] -> [6, 6, b, nH, nW, K]``."""
    _output_adjoint_plan(grad_M)(grad_y)


def _chunks(batch: int, H: int, W: int, channels: int, element_size: int) -> list[tuple[int, int]]:
    """(start, size) of each chunk of images whose transformed tiles fit in ``CHUNK_BYTES``."""
    per_image = 36 * (H // 4) * (W // 4) * channels * element_size
    n = max(1, min(batch, CHUNK_BYTES // per_image))
    return [(start, min(n, batch - start)) for start in range(0, batch, n)]


class _Workspace:
    """The work tensors and transform plans of one chunk size, made once and reused by every chunk."""

    def __init__(self, like: Tensor, b: int, H: int, W: int, K: int, backward: bool) -> None:
        C, nH, nW, new = like.shape[1], H // 4, W // 4, like.new_empty
        self.size = b
        # The zero border is the convolution's padding; each chunk overwrites only the interior.
        padded = like.new_zeros(b, H + 2, W + 2, C)
        self.interior = padded[:, 1 : H + 1, 1 : W + 1]
        self.V, self.M = new(6, 6, b, nH, nW, C), new(6, 6, b, nH, nW, K)
        self.V_mat, self.M_mat = self.V.view(36, -1, C), self.M.view(36, -1, K)
        self.input = _input_plan(padded, self.V)
        if not backward:
            self.output = _output_plan(self.M)
            return
        # Backward: M holds grad_M.
        self.grad_V = new(6, 6, b, nH, nW, C)
        self.grad_V_mat = self.grad_V.view(36, -1, C)
        self.output_adjoint = _output_adjoint_plan(self.M)
        self.input_adjoint = _input_adjoint_plan(self.grad_V)

    def load(self, x_nhwc: Tensor) -> None:
        """V of a chunk of the input, ``x_nhwc [b, H, W, C]``."""
        self.interior.copy_(x_nhwc)
        self.input()


def _chunk_workspaces(x: Tensor, K: int, backward: bool) -> Iterator[tuple[int, int, _Workspace]]:
    """(start, size, workspace) for each chunk of ``x [B, C, H, W]``, the V of that chunk loaded;
    a workspace is made once per chunk size (the last chunk may be shorter)."""
    B, C, H, W = x.shape
    x_nhwc = x.permute(0, 2, 3, 1)  # a view when x is channels_last
    ws = None
    for start, b in _chunks(B, H, W, max(C, K), x.element_size()):
        if ws is None or ws.size != b:
            ws = _Workspace(x, b, H, W, K, backward)
        ws.load(x_nhwc[start : start + b])
        yield start, b, ws


class _WinogradConv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        B, C, H, W = x.shape
        K = weight.shape[0]
        U = filter_transform(weight)
        y = x.new_empty(B, H, W, K)
        for start, b, ws in _chunk_workspaces(x, K, backward=False):
            torch.bmm(ws.V_mat, U, out=ws.M_mat)
            if bias is not None:
                # Column 1 of A^T is all ones, so component (1, 1) reaches every output of its tile once.
                ws.M[1, 1].add_(bias)
            ws.output(y[start : start + b].view(b, H // 4, 4, W // 4, 4, K))
        ctx.save_for_backward(x, U)
        ctx.has_bias = bias is not None
        return y.permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        x, U = ctx.saved_tensors
        B, C, H, W = x.shape
        K = U.shape[-1]
        grad_y_nhwc = grad_y.permute(0, 2, 3, 1)
        grad_x = x.new_empty(B, H, W, C)
        grad_U = torch.zeros_like(U)
        grad_bias = x.new_zeros(K) if ctx.has_bias else None
        U_T = U.transpose(1, 2)
        for start, b, ws in _chunk_workspaces(x, K, backward=True):
            ws.output_adjoint(grad_y_nhwc[start : start + b].reshape(b, H // 4, 4, W // 4, 4, K))
            torch.bmm(ws.M_mat, U_T, out=ws.grad_V_mat)
            ws.input_adjoint(grad_x[start : start + b])
            grad_U.baddbmm_(ws.V_mat.transpose(1, 2), ws.M_mat)
            if grad_bias is not None:
                # Row 1 of A is all ones: grad_M[1, 1] already sums each tile's 16 output gradients.
                grad_bias += ws.M[1, 1].sum((0, 1, 2))
        return grad_x.permute(0, 3, 1, 2), filter_transform_adjoint(grad_U), grad_bias


def winograd_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` by F(4x4, 3x3): ``x [B, C, H, W]`` with H, W multiples of 4,
    ``weight [K, C, 3, 3]`` -> ``[B, K, H, W]`` in channels_last. Differentiable once (no double backward)."""
    if x.shape[-1] % 4 or x.shape[-2] % 4:
        raise ValueError(f"F(4x4, 3x3) needs H and W divisible by 4, got {tuple(x.shape[-2:])}")
    return _WinogradConv3x3.apply(x, weight, bias)


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(in_ch, out_ch, 3, padding=1)`` that computes by F(4x4, 3x3) where that is faster.

    The same parameters and state-dict keys as ``nn.Conv2d``, so checkpoints do not depend on the
    algorithm. ``algorithm``: ``direct`` (PyTorch's convolution), ``winograd`` (wherever the input
    allows it: H and W divisible by 4, fp32 or fp64, no autocast, not under ``torch.compile``) or
    ``auto``: measured, the way ``torch.backends.cudnn.benchmark`` chooses. Whether Winograd pays
    depends on the CPU: bench/conv_speed.py found forward + backward 1.2-1.8x faster for layers of 64+
    channels on an AMD Zen 1, but the direct kernel faster on a Zen 5 and on an Intel Xeon with AMX
    (docs/speed.md). So on the first training pass of each input configuration (shape, dtype, memory
    layout) on CPU, a layer of 64+ channels at 8x8 or more times forward + backward of both on that
    input and keeps Winograd only if it is at least :attr:`MARGIN` faster, so that ``auto`` is never
    measurably slower than ``direct``. The verdicts are part of a run's checkpoints (:func:`conv_choices`),
    so that a resumed run computes with the kernels it trained with; layers given a shared table
    (:func:`share_conv_verdicts`: the trainer's, kept per machine across runs) take a verdict from it for a
    layer and input configuration measured before, and add the ones they measure. A forward pass alone (sampling),
    CUDA (cuDNN has Winograd kernels of its own), narrower or smaller layers and inputs Winograd cannot
    take use the direct kernel without measuring.
    """

    MARGIN = 0.9
    """Winograd must take at most this fraction of the direct kernel's time to be chosen."""
    REPEATS = 5
    """Timed forward + backward passes of each algorithm, after one warm-up each (their medians compared)."""

    def __init__(self, in_channels: int, out_channels: int, algorithm: ConvAlgorithm = "auto") -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        self.algorithm = algorithm
        # Measured choices of this layer, by input configuration (see measure_key).
        self.choices: dict[tuple, bool] = {}
        self.known: dict[str, bool] | None = None
        """Verdicts shared with other layers, by :meth:`config_key` (None: this layer's own only)."""
        self.measuring_seconds = 0.0
        """Seconds this layer spent measuring: the one-time cost of ``auto``."""

    @staticmethod
    def measure_key(x: Tensor) -> tuple:
        """What the measured choice depends on: the input's shape, dtype and memory layout (the grad mode is
        fixed, since only a training pass measures)."""
        return tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last)

    def config_key(self, x: Tensor) -> str:
        """What a verdict holds for on one machine, whichever layer measured it: the channels in and out and
        :meth:`measure_key`, as text: ``64->128 [32, 64, 16, 16] float32 channels_last``."""
        shape, dtype, channels_last = self.measure_key(x)
        layout = "channels_last" if channels_last else "contiguous"
        return f"{self.in_channels}->{self.out_channels} {list(shape)} {str(dtype).removeprefix('torch.')} {layout}"

    def uses_winograd(self, x: Tensor) -> bool:
        if self.algorithm == "direct":
            return False
        H, W = x.shape[-2:]
        possible = (H % 4 == 0 and W % 4 == 0 and x.dtype in (torch.float32, torch.float64)
                    and not torch.is_autocast_enabled(x.device.type) and not torch.compiler.is_compiling())
        if self.algorithm == "winograd":
            return possible
        backward = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        # Narrow or small layers never gained on any host measured (0.35-0.8x: the transforms cost more than
        # the smaller products save), so they take the direct kernel without paying for a measurement.
        large = H * W >= 64 and min(self.in_channels, self.out_channels) >= 64
        if not (possible and backward and large and x.device.type == "cpu"):
            return False
        key = self.measure_key(x)
        if key not in self.choices:
            shared = self.config_key(x)
            if self.known is not None and shared in self.known:
                self.choices[key] = self.known[shared]
            else:
                start = time.perf_counter()
                self.choices[key] = self.measure(x)
                self.measuring_seconds += time.perf_counter() - start
                if self.known is not None:
                    self.known[shared] = self.choices[key]
        return self.choices[key]

    def measure(self, x: Tensor) -> bool:
        """Whether Winograd's forward + backward on ``x`` beats the direct kernel's by :attr:`MARGIN` (medians of
        :attr:`REPEATS` paired passes; the layer's own gradients are not touched)."""
        x = x.detach().requires_grad_()
        w, b = self.weight.detach().requires_grad_(), self.bias.detach().requires_grad_()

        def direct() -> None:
            torch.autograd.grad(F.conv2d(x, w, b, padding=1).sum(), (x, w, b))

        def winograd() -> None:
            torch.autograd.grad(winograd_conv3x3(x, w, b).sum(), (x, w, b))

        times: dict[str, list[float]] = {"direct": [], "winograd": []}
        # Plain saved tensors for these passes even inside a gradient-checkpointed block, whose hooks would
        # otherwise take them for the block's own and recompute the block to unpack them.
        plain = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
        with torch.enable_grad(), plain:
            for i in range(self.REPEATS + 1):
                for name, run in (("direct", direct), ("winograd", winograd)):
                    start = time.perf_counter()
                    run()
                    if i > 0:  # the first pass of each warms up
                        times[name].append(time.perf_counter() - start)
        return statistics.median(times["winograd"]) <= self.MARGIN * statistics.median(times["direct"])

    def forward(self, x: Tensor) -> Tensor:
        if self.uses_winograd(x):
            return winograd_conv3x3(x, self.weight, self.bias)
        return F.conv2d(x, self.weight, self.bias, padding=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.algorithm}"


def conv_choices(model: nn.Module) -> list[list]:
    """The measured verdicts of every ``auto`` layer of ``model``: ``[name, shape, dtype, channels_last,
    winograd]`` rows of plain values (what a checkpoint's training state may hold)."""
    return [[name, list(key[0]), str(key[1]), key[2], choice] for name, m in model.named_modules()
            if isinstance(m, Conv3x3) for key, choice in m.choices.items()]


def restore_conv_choices(model: nn.Module, rows: list[list]) -> None:
    """Give ``model``'s layers back the verdicts :func:`conv_choices` saved (layers or rows that do not match
    are left to measure again)."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Conv3x3)}
    for name, shape, dtype, channels_last, choice in rows:
        if name in layers:
            layers[name].choices[(tuple(shape), getattr(torch, dtype.removeprefix("torch.")), channels_last)] = choice


def share_conv_verdicts(model: nn.Module, known: dict[str, bool]) -> None:
    """Let every ``auto`` layer of ``model`` take its verdicts from ``known`` (by :meth:`Conv3x3.config_key`) and
    add the ones it measures there: layers of one configuration measure once, and a table kept from earlier runs
    on the same machine spares them measuring at all. A verdict the layer already holds (a resumed run's) wins."""
    for m in model.modules():
        if isinstance(m, Conv3x3):
            m.known = known


def measuring_seconds(model: nn.Module) -> float:
    """Seconds ``model``'s ``auto`` layers have spent measuring (in this process)."""
    return sum(m.measuring_seconds for m in model.modules() if isinstance(m, Conv3x3))
