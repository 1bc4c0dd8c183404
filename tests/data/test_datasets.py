"""Datasets: built-ins, folders, .npz, and a one-line error for every kind of bad input."""


import numpy as np
import pytest
import torch
from PIL import Image

from gaussdiff.data.datasets import (FASHION_MNIST_DIR, DataError, load_data, load_fashion_mnist, to_model_range,
                                     to_uint8)


def test_digits_are_8_bit_8x8_with_labels_and_a_fixed_split():
    train, test = load_data("digits"), load_data("digits", "test")
    assert train.images.dtype == torch.uint8 and train.shape == (1, 8, 8)
    assert len(train) + len(test) == 1797 and train.num_classes == 10
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert torch.equal(load_data("digits", "test").images, test.images)


def test_uint8_round_trip_through_model_range():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    assert torch.equal(to_uint8(to_model_range(x)), x)
    assert to_model_range(x).min().item() == -1.0 and to_model_range(x).max().item() == 1.0


@pytest.mark.skipif(not FASHION_MNIST_DIR.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_idx_files():
    data = load_data("fashion-mnist", "test")
    assert data.images.shape == (10000, 1, 28, 28) and data.labels.shape == (10000,)
    assert set(data.labels.unique().tolist()) == set(range(10))


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)


def bicubic_reach(lo, hi, sizes):
    """Bounds on a PIL bicubic resize (one pass per axis, each rounded to uint8) of pixels in [lo, hi].

    Each pass is a combination with weights summing to 1, so it stays within nu (hi - lo) of [lo, hi], nu the
    most negative weight a row has (the kernel's lobes, read off the float "F" resize of unit impulses; the
    larger of the axes', whichever PIL does first); then rounding adds 0.5, and PIL's 22-bit fixed-point
    weights < 1e-3.
    """
    nus = []
    for n_in, n_out in sizes:
        impulses = [Image.fromarray(np.eye(n_in, dtype=np.float32)[j : j + 1]) for j in range(n_in)]
        w = np.stack([np.asarray(im.resize((n_out, 1), Image.Resampling.BICUBIC))[0] for im in impulses], 1)
        nus.append(float(np.clip(-w, 0, None).sum(1).max()))
    for _ in sizes:
        lo, hi = max(0.0, lo - max(nus) * (hi - lo) - 0.501), min(255.0, hi + max(nus) * (hi - lo) + 0.501)
    return lo, hi


def test_image_folder_with_classes(image_folder):
    data = load_data(str(image_folder), image_size=8, channels=3)
    assert data.images.shape == (12, 3, 8, 8) and data.class_names == ["blue", "red"]
    red = data.images[data.labels == 1].float().mean(dim=(0, 2, 3))
    # The fixture's red images are (200, 30, 30) + integers in [-20, 19]; 12x10 is resized to 10x8 (12 -> 10
    # across, 10 -> 8 down) and cropped to 8x8, so every red value and every blue value stays within reach.
    red_lo, _ = bicubic_reach(180, 219, [(12, 10), (10, 8)])
    _, blue_hi = bicubic_reach(10, 49, [(12, 10), (10, 8)])
    assert red[0] >= red_lo and red[2] <= blue_hi
    grey = load_data(str(image_folder), image_size=4, channels=1)
    assert grey.images.shape == (12, 1, 4, 4)


def test_corrupt_image_is_reported_by_path(image_folder):
    bad = image_folder / "red" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="broken.png"):
        load_data(str(image_folder), image_size=8)


def test_empty_folder_non_image_and_unknown_dataset(tmp_path, image_folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_data(str(tmp_path / "empty"))
    (image_folder / "red" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt.*not an image"):
        load_data(str(image_folder))
    with pytest.raises(DataError, match="no such dataset"):
        load_data("imagenet-21k")


def test_npz_round_trip_and_wrong_resolution(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", arr, np.arange(5))
    data = load_data(str(tmp_path / "s.npz"))
    assert (torch.equal(data.images.permute(0, 2, 3, 1), torch.from_numpy(arr))
            and data.labels.tolist() == list(range(5)))
    with pytest.raises(DataError, match="expected 16x16"):
        load_data(str(tmp_path / "s.npz"), image_size=16)
    with pytest.raises(DataError, match="1..1024"):
        load_data("digits", image_size=0)
    np.savez(tmp_path / "f.npz", arr.astype(np.float32))
    with pytest.raises(DataError, match="uint8"):
        load_data(str(tmp_path / "f.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npz"):
        load_data(str(tmp_path / "junk.npz"))


def test_a_built_in_dataset_at_another_size_is_area_downsampled_or_bicubic_upsampled():
    # A cascade's base model trains on Fashion-MNIST at 14x14: each pixel the mean of a 2x2 block, rounded to
    # the nearest level (area averaging); upsampling keeps a constant image constant.
    digits = load_data("digits")
    small = load_data("digits", image_size=4)
    blocks = digits.images.float().reshape(-1, 1, 4, 2, 4, 2).mean(dim=(3, 5))
    assert small.images.shape == (len(digits), 1, 4, 4) and torch.equal(small.images, blocks.round().to(torch.uint8))
    assert torch.equal(small.labels, digits.labels) and small.captions == digits.captions
    big = load_data("digits", image_size=16)
    assert big.images.shape[-1] == 16 and big.images.dtype == torch.uint8


@pytest.mark.parametrize("shape, match", [((0, 1, 8, 8), "no images"), ((4, 2, 8, 8), "images have 2 channels"),
                                          ((4, 4, 8, 8), "images have 4 channels"), ((4, 3, 8, 6), "8x6")])
def test_data_a_run_cannot_draw_is_refused_however_it_came(shape, match):
    """Data handed to a trainer as tensors is checked as a .npz is: when a run resolves its config."""
    from gaussdiff.data.datasets import DataConfig, ImageData

    with pytest.raises(DataError, match=match):
        ImageData(torch.zeros(shape, dtype=torch.uint8), None).resolve(DataConfig(data="made-up"))
    assert ImageData(torch.zeros((4, 3, 8, 8), dtype=torch.uint8), None).resolve(DataConfig()).image_channels == 3


def test_to_uint8_clamps_what_lies_outside_minus_one_to_one():
    """A sample may overshoot [-1, 1]; it must saturate at 0 and 255, not wrap around the 256 levels."""
    assert to_uint8(torch.tensor([1.5, -1.5, 1.0, -1.0, 0.0])).tolist() == [255, 0, 255, 0, 128]


def test_area_downsampling_by_four_is_the_mean_of_each_block():
    """Area averaging (antialiased) at a factor of 4: each pixel the rounded mean of its 4x4 block; bilinear
    interpolation, which equals it at a factor of 2, reads only the block's middle pixels."""
    from gaussdiff.data.datasets import resize_images

    images = torch.randint(0, 256, (3, 2, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    blocks = images.double().reshape(3, 2, 8, 4, 8, 4).mean(dim=(3, 5))
    # float32 block means of 16 integers are exact (sums below 2^24); a mean at exactly .5 rounds to even in both.
    assert torch.equal(resize_images(images, 8), blocks.round().to(torch.uint8))
