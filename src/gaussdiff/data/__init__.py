"""Datasets: built-in, image folders and .npz files, as uint8 images and a dict of conditions."""

from .datasets import DataConfig, ImageData, load_configured, load_data, to_model_range, to_uint8

__all__ = ["DataConfig", "ImageData", "load_configured", "load_data", "to_model_range", "to_uint8"]
