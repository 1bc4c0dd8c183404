"""Datasets: built-in (digits, Fashion-MNIST, the ``shapes`` scenes), image folders and .npz files, as uint8
images with labels, captions and attributes."""

from .captions import class_captions
from .datasets import DataConfig, ImageData, load_configured, load_data, to_model_range, to_uint8

__all__ = ["DataConfig", "ImageData", "class_captions", "load_configured", "load_data", "to_model_range", "to_uint8"]
