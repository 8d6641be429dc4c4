"""scikit-learn's handwritten digits as images, in the one representation the corpus also uses."""

from __future__ import annotations

import numpy as np
from PIL import Image

LEVELS = 16  # sklearn digits hold counts of inked pixels per 4x4 block: 0..16


def levels_to_image(levels: np.ndarray) -> Image.Image:
    """8x8 array of levels 0..16 -> RGB PIL image, ink bright on dark (sklearn's polarity, no inversion)."""
    grey = np.rint(np.asarray(levels, dtype=np.float64) * 255 / LEVELS).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def load_digit_images() -> tuple[list[Image.Image], list[int]]:
    """All 1,797 sklearn digits as 8x8 RGB images, with their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return [levels_to_image(x) for x in data.images], [int(y) for y in data.target]
