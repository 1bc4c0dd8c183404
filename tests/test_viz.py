"""Pictures say what they show: a caption under the images (and in the PNG's Description), labels beside rows,
small images enlarged, and no empty columns."""

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from gaussdiff.viz import CAPTION_WIDTH, TEXT_SIZE, add_caption, image_grid, save_grid, save_strips, wrap


def digits(n: int, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_small_images_are_enlarged_and_a_grid_has_no_empty_columns():
    grid = image_grid(digits(4), nrow=10)  # asked for 10 a row, given 4: four columns, not ten
    cell = 8 * 8 + 2  # 8x8 enlarged 8x to the 64-pixel minimum, and the padding
    assert grid.size == (4 * cell + 2, cell + 2)
    # A size that does not divide 64: 28x28 (Fashion-MNIST) is enlarged 3x, to 84 pixels, the least at or above 64.
    assert image_grid(digits(1, size=28)).size == (3 * 28 + 4, 3 * 28 + 4)


def test_the_caption_is_written_under_the_images_and_kept_in_the_png(tmp_path):
    caption = "runs/demo/checkpoints/step-0002000, EMA weights, ddim, 50 steps, linspace spacing, seed 0"
    plain = save_grid(digits(4), tmp_path / "plain.png", nrow=2)
    captioned = save_grid(digits(4), tmp_path / "captioned.png", nrow=2, caption=caption)
    with Image.open(plain) as a, Image.open(captioned) as b:
        assert b.height > a.height and b.width == max(a.width, CAPTION_WIDTH)
        assert "Description" not in a.text and b.text["Description"] == caption
        # The images themselves are unchanged at the top left; the band under them holds dark text.
        assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))[: a.height, : a.width])
        assert np.asarray(b.convert("L"))[a.height :].min() < 128


def test_captions_wrap_at_the_width_and_keep_every_word():
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    text = "a large red circle to the left of a small blue square, ddim, 50 steps, seed 0 " * 3
    lines = wrap(text, 200, draw)
    assert len(lines) > 1 and " ".join(lines) == " ".join(text.split())
    font = ImageFont.load_default(size=TEXT_SIZE)
    assert all(draw.textlength(line, font=font) <= 200 for line in lines)
    assert add_caption(Image.new("RGB", (500, 40)), "").size == (500, 40)  # no caption: the picture as it is


def test_row_labels_widen_the_picture_and_strips_take_a_caption(tmp_path):
    plain = save_grid(digits(6), tmp_path / "a.png", nrow=3)
    labelled = save_grid(digits(6), tmp_path / "b.png", nrow=3, row_labels=["class 0", "class 1"])
    with Image.open(plain) as a, Image.open(labelled) as b:
        assert b.width > a.width and b.height == a.height
    path = save_strips([digits(3), digits(3)], tmp_path / "s.png", ["t=0", "t=500", "t=999"], ["x_t", "x0 est."],
                       caption="forward process")
    with Image.open(path) as s:
        assert s.text["Description"] == "forward process"


def test_a_caption_word_wider_than_the_picture_widens_the_canvas_instead_of_being_cut_off():
    """A word is never broken, so one wider than the wrapping width (an absolute checkpoint path, say) has a line of
    its own; the canvas must then be as wide as that line plus the margins, or its end is cut off at the edge."""
    path = "/home/someone/experiments/fashion-mnist-text-cascade-base/checkpoints/step-0020000,"
    font = ImageFont.load_default(size=TEXT_SIZE)
    needed = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(path, font=font)
    assert needed > CAPTION_WIDTH - 8  # the case this test is about
    out = np.asarray(add_caption(Image.new("RGB", (100, 40), "white"), f"{path} EMA weights, ddim, 50 steps")
                     .convert("L"))
    ink = np.nonzero(out.min(axis=0) < 128)[0]
    assert out.shape[1] >= 4 + needed + 4 and ink.max() < out.shape[1] - 2  # white margin right of the last glyph
