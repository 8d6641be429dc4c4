"""Procedural pretraining corpus: rendered digit glyphs made to look like sklearn's digits, with captions.

The real digits (UCI optdigits) are 32x32 binary scans of handwriting, scaled to fill the height, with
4x4 blocks counted into 8x8 images of levels 0..16. The corpus imitates that pipeline so the only gap
left between pretraining and evaluation is handwriting versus type.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

# Only fonts shipped inside our dependencies, so a rebuild yields the same corpus on any machine.
# Files under matplotlib's mpl-data/fonts/ttf whose digits 0..9 are real, distinct glyphs
# (the Display, STIXNonUni/STIXSiz* faces have none; cmex10/cmsy10 map digits to symbols).
MPL_FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
    "cmmi10.ttf",
)
PIL_DEFAULT_FONT = "pillow:load_default"  # Pillow's embedded Aileron Regular
FONTS = MPL_FONT_FILES + (PIL_DEFAULT_FONT,)

CLASS_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = (
    "a photo of the digit {}.",
    "a photo of the number {}.",
    "the digit {}.",
    "the number {}.",
    "a handwritten {}.",
    "a drawing of a {}.",
    "a picture of the number {}.",
    "an image of the digit {}.",
    "{}.",
)

SIDE = 32  # resolution of the scans before the 4x4 block count
BLOCK = 4
RENDER_SIZE = 64  # font size of the master glyph renders
STROKES = (0, 1, 2, 3)  # extra outline width (px at RENDER_SIZE)
MAX_ROTATION = 12.0  # degrees
WIDTH_SCALE = (0.8, 1.2)  # aspect jitter
MAX_WIDTH = 24  # most real digits span 6 of the 8 columns
ELASTIC = (0.08, 0.15)  # displacement amplitude, as a fraction of SIDE
INK_FRACTION = (0.22, 0.38)  # sklearn digits average 0.31 inked pixels


@cache
def _font(name: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if name == PIL_DEFAULT_FONT:
        return ImageFont.load_default(size=RENDER_SIZE)
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), RENDER_SIZE)


@cache
def _master_glyph(font: str, digit: int, stroke: int) -> Image.Image:
    """White-on-black render of one digit, cropped to its ink (cached: rendering dominates otherwise)."""
    canvas = Image.new("L", (3 * RENDER_SIZE, 3 * RENDER_SIZE))
    ImageDraw.Draw(canvas).text(
        (RENDER_SIZE, RENDER_SIZE), str(digit), font=_font(font), fill=255, stroke_width=stroke, stroke_fill=255
    )
    return canvas.crop(canvas.getbbox())


def _fit_to_frame(glyph: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Rotate, then scale to fill the frame's height (width jittered) and centre, like the optdigits scans."""
    glyph = glyph.rotate(rng.uniform(-MAX_ROTATION, MAX_ROTATION), resample=Image.Resampling.BICUBIC, expand=True)
    glyph = glyph.crop(glyph.getbbox())
    width = glyph.width * SIDE / glyph.height * rng.uniform(*WIDTH_SCALE)
    width = int(np.clip(round(width), 6, MAX_WIDTH))
    frame = Image.new("L", (SIDE, SIDE))
    left = (SIDE - width) // 2 + int(rng.integers(-1, 2))
    frame.paste(glyph.resize((width, SIDE), resample=Image.Resampling.BILINEAR), (int(np.clip(left, 0, SIDE - width)), 0))
    return np.asarray(frame, dtype=np.float32) / 255


def _elastic(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth random displacement field: a cheap stand-in for the wobble of handwriting."""
    amplitude = rng.uniform(*ELASTIC) * SIDE
    coords = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    for axis in range(2):
        coarse = rng.standard_normal((4, 4))
        field = ndimage.zoom(coarse, SIDE / 4, order=3)
        coords[axis] += amplitude * field / max(np.abs(field).max(), 1e-6)
    return ndimage.map_coordinates(image, coords, order=1, mode="constant")


def _pen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binarise at a random ink fraction after a blur: thick, rounded strokes like a pen scan."""
    blurred = ndimage.gaussian_filter(image, sigma=rng.uniform(0.7, 1.4))
    threshold = np.quantile(blurred, 1 - rng.uniform(*INK_FRACTION))
    return (blurred > max(threshold, 1e-3)).astype(np.uint8)


def _block_count(binary: np.ndarray) -> np.ndarray:
    """32x32 binary -> 8x8 counts of inked pixels per 4x4 block (levels 0..16)."""
    return binary.reshape(SIDE // BLOCK, BLOCK, SIDE // BLOCK, BLOCK).sum(axis=(1, 3)).astype(np.uint8)


def render_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic digit as an 8x8 uint8 array of levels 0..16."""
    font = FONTS[rng.integers(len(FONTS))]
    glyph = _master_glyph(font, digit, STROKES[rng.integers(len(STROKES))])
    return _block_count(_pen(_elastic(_fit_to_frame(glyph, rng), rng), rng))


def caption(digit: int, rng: np.random.Generator) -> str:
    """A caption naming the digit as a word or a numeral: both styles must map to the same concept."""
    name = CLASS_WORDS[digit] if rng.random() < 0.5 else str(digit)
    return CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(name)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n samples (levels [n, 8, 8] uint8, labels [n], captions), balanced over digits; same seed, same corpus."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10)
    images = np.stack([render_digit(int(d), rng) for d in labels])
    return images, labels, [caption(int(d), rng) for d in labels]
