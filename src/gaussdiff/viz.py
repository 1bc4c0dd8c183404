"""Pictures: sample grids, forward-process and trajectory strips, loss curves.

Small images are enlarged with nearest-neighbour so that 8x8 digits stay crisp pixels. A picture says what
it shows: rows and columns are labelled where they differ (classes, prompts, t), and a caption under the
images names how they were made (sampler and steps, weights, seed), also kept in the PNG's Description.
"""

from __future__ import annotations

import functools
import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin  # noqa: E402
from torch import Tensor  # noqa: E402

from .errors import DataError  # noqa: E402

if TYPE_CHECKING:
    from .evaluation.bpd import BpdReport

MIN_CELL = 64  # pixels: images smaller than this are enlarged by an integer factor
TEXT_SIZE = 13  # pixels: Pillow's default 10 px font hints the spaces between words away ("there isa large")
CAPTION_WIDTH = 360  # pixels: a caption under a narrow picture wraps at this width, not at the picture's


@functools.cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=TEXT_SIZE)  # loaded once: wrap measures every word with it


def _text_at_middle(draw: ImageDraw.ImageDraw, x: float, middle: float, text: str) -> None:
    """``text`` from ``x``, centred vertically on ``middle``."""
    draw.text((x, middle), text, fill="black", font=_font(), anchor="lm")


def _scale_for(size: int) -> int:
    return max(1, math.ceil(MIN_CELL / size))


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """``uint8 [N, C, H, W]`` -> one PIL image, ``nrow`` per row (default: square), enlarged if small."""
    n, c, h, w = images.shape
    nrow = min(nrow or math.ceil(math.sqrt(n)), max(n, 1))  # no empty columns when there are fewer images
    rows = math.ceil(n / nrow)
    s = _scale_for(max(h, w))
    grid = np.full((rows * (h * s + pad) + pad, nrow * (w * s + pad) + pad, 3), 255, dtype=np.uint8)
    arr = images.cpu().numpy().transpose(0, 2, 3, 1)
    if c == 1:
        arr = np.repeat(arr, 3, axis=3)
    arr = arr.repeat(s, axis=1).repeat(s, axis=2)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h * s + pad), pad + col * (w * s + pad)
        grid[y : y + h * s, x : x + w * s] = arr[i]
    return Image.fromarray(grid)


def label_rows(grid: Image.Image, row_labels: Sequence[str]) -> Image.Image:
    """``grid`` with ``row_labels[i]`` written left of its i-th row of cells (class names, prompts)."""
    draw = ImageDraw.Draw(grid)
    width = 8 + max(int(draw.textlength(text, font=_font())) for text in row_labels)
    canvas = Image.new("RGB", (grid.width + width, grid.height), "white")
    canvas.paste(grid, (width, 0))
    draw = ImageDraw.Draw(canvas)
    cell_h = (grid.height - 2) / len(row_labels)
    for i, text in enumerate(row_labels):
        _text_at_middle(draw, 4, 2 + i * cell_h + cell_h / 2, text)
    return canvas


def wrap(text: str, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a longer word keeps a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=_font()) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def add_caption(picture: Image.Image, caption: str) -> Image.Image:
    """``picture`` with ``caption`` written under it, wrapped (the canvas widened to :data:`CAPTION_WIDTH` for a
    narrow picture, and further for a word wider than that, such as a long path, so that no text is cut off)."""
    if not caption:
        return picture
    width = max(picture.width, CAPTION_WIDTH)
    measure = ImageDraw.Draw(picture)
    lines = wrap(caption, width - 8, measure)
    width = max(width, 8 + max(math.ceil(measure.textlength(line, font=_font())) for line in lines))
    line_h = TEXT_SIZE + 4
    canvas = Image.new("RGB", (width, picture.height + 6 + line_h * len(lines)), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        _text_at_middle(draw, 4, picture.height + 4 + line_h * i + line_h / 2, line)
    return canvas


def _save_png(picture: Image.Image, path: Path, caption: str) -> Path:
    """``picture`` with its caption under it, and in the PNG's Description (for a reader that does not look)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if caption:
        info.add_text("Description", caption)
    add_caption(picture, caption).save(path, pnginfo=info)
    return path


def save_grid(images: Tensor, path: Path, nrow: int | None = None, row_labels: Sequence[str] = (),
              caption: str = "") -> Path:
    """Write ``uint8 [N, C, H, W]`` as a PNG grid, ``nrow`` a row, with ``row_labels`` written beside the rows
    and ``caption`` (how the images were made) under them."""
    grid = image_grid(images, nrow)
    return _save_png(label_rows(grid, row_labels) if row_labels else grid, path, caption)


def save_strips(rows: Sequence[Tensor], path: Path, column_labels: Sequence[str], row_labels: Sequence[str] = (),
                caption: str = "") -> Path:
    """Rows of equally many ``uint8 [K, C, H, W]`` images, labelled above each column (and left of rows), with
    ``caption`` under them.

    Used for the forward process (one image at chosen t) and for sampling trajectories
    (x_t and the x0 estimate along a run), as in the DDPM paper's Figures 6-7.
    """
    grid = image_grid(torch.cat(list(rows)), nrow=len(column_labels))
    measure = ImageDraw.Draw(grid)
    label_w = 8 + max(int(measure.textlength(r, font=_font())) for r in row_labels) if row_labels else 0
    top = TEXT_SIZE + 6
    canvas = Image.new("RGB", (grid.width + label_w, grid.height + top), "white")
    canvas.paste(grid, (label_w, top))
    draw = ImageDraw.Draw(canvas)
    cell_w = (grid.width - 2) / len(column_labels)
    for i, text in enumerate(column_labels):
        _text_at_middle(draw, label_w + 2 + i * cell_w + 2, top / 2, text)
    cell_h = (grid.height - 2) / max(1, len(rows))
    for i, text in enumerate(row_labels):
        _text_at_middle(draw, 4, top + 2 + i * cell_h + cell_h / 2, text)
    return _save_png(canvas, path, caption)


def _save_figure(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_metrics(path: Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (none when there is no file). A run killed while writing a row leaves
    that last line cut short: it is skipped, since the rows before it are whole and a resumed run logs it again.
    A bad line before the last is a :class:`DataError` naming ``path:line``."""
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    rows = []
    for i, (n, line) in enumerate(numbered):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(numbered) - 1:
                break  # the row a kill cut short
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(row, dict):
            if i == len(numbered) - 1:
                break
            raise DataError(f"{path}:{n}: expected a JSON object (a row of metrics)")
        rows.append(row)
    return rows


def _finite(values: Sequence[object]) -> np.ndarray:
    """Numbers as float64, a missing or non-finite one (``null``, as a row writes a NaN) as NaN, which the
    plots leave out."""
    return np.array([v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values],
                    dtype=float)


def plot_loss(metrics_path: Path, out: Path) -> Path | None:
    """Training loss against step (raw and smoothed) from ``metrics.jsonl``; per-timestep loss beside it."""
    rows = [r for r in read_metrics(metrics_path) if "loss" in r and "step" in r]
    if not rows:
        return None
    steps = _finite([r["step"] for r in rows])
    loss = _finite([r["loss"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.plot(steps, loss, alpha=0.35, label="loss")
    if len(loss) >= 5:
        k = max(2, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_yscale("log"), ax.legend(), ax.grid(alpha=0.3)
    ax.set_title("training loss")
    by_t = [r["loss_by_t"] for r in rows if isinstance(r.get("loss_by_t"), list) and r["loss_by_t"]]
    ax = axes[1]
    if by_t:
        last = _finite(by_t[-1])
        centers = (np.arange(len(last)) + 0.5) / len(last)
        ax.bar(centers, last, width=1 / len(last))
        ax.set_xlabel("t / T"), ax.set_ylabel("loss"), ax.set_yscale("log")
        ax.set_title("loss by timestep (last window)")
    else:
        ax.axis("off")
    return _save_figure(fig, out)


def plot_bpd(report: "BpdReport", path: Path, source: str = "") -> Path:
    """The bound's terms per step (Improved DDPM Fig. 2) and the rate-distortion curve (DDPM Fig. 5), with
    ``source`` (what was measured: the run, images, steps, weights, seed) above them."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if source:
        fig.suptitle("\n".join(textwrap.wrap(source, 140)), fontsize=9)
    ax = axes[0]
    ax.plot(report.timesteps, report.vb_per_step)
    ax.set_yscale("log"), ax.set_xlabel("t"), ax.set_ylabel("bits/dim"), ax.grid(alpha=0.3)
    ax.set_title(f"terms of the bound (L_0 = {report.l0:.3f}, total {report.bpd:.3f} bits/dim)")
    ax = axes[1]
    ax.plot(report.rate, report.distortion, marker=".", markersize=2)
    ax.set_xlabel("rate (bits/dim)"), ax.set_ylabel("distortion (RMSE, [0, 255])"), ax.grid(alpha=0.3)
    ax.set_title("progressive lossy compression")
    return _save_figure(fig, path)
