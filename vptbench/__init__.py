"""vptbench: compare ways of adapting CLIP to an image-classification task."""

__version__ = "0.1.0"
