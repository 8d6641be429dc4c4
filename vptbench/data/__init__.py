"""Datasets: loaded once, decoded once into uint8 tensors, split with a seed."""

from vptbench.data.sources import load_images
from vptbench.data.store import ImageData, ImageSplit, Splits, make_splits, normalize

__all__ = ["ImageData", "ImageSplit", "Splits", "load_images", "make_splits", "normalize"]
