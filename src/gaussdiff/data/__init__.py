"""Datasets: built-in (digits, Fashion-MNIST, the ``shapes`` scenes), image folders, prepared shards and .npz files,
as uint8 images with labels, captions and attributes."""

from .captions import class_captions
from .datasets import (DataConfig, FolderImages, ImageData, crop_places, load_configured, load_data, to_model_range,
                       to_uint8)
from .shards import ShardImages, write_shards

__all__ = ["DataConfig", "FolderImages", "ImageData", "ShardImages", "class_captions", "crop_places", "load_configured",
           "load_data", "to_model_range", "to_uint8", "write_shards"]
