"""Images decoded once into uint8 tensors; normalisation happens on the device, per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vptbench.errors import DataError, first_few, first_line

CHUNK = 256


@dataclass
class ImageSplit:
    pixels: Tensor  # uint8 (N, 3, H, W)
    labels: Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor) -> ImageSplit:
        return ImageSplit(self.pixels[index], self.labels[index])

    def to(self, device: torch.device | str) -> ImageSplit:
        return ImageSplit(self.pixels.to(device), self.labels.to(device))


@dataclass
class ImageData:
    train: ImageSplit
    test: ImageSplit
    validation: ImageSplit | None
    mean: list[float]
    std: list[float]

    def to(self, device: torch.device | str) -> ImageData:
        """The whole decoded dataset on the device once, so runs never copy images again."""
        validation = self.validation.to(device) if self.validation is not None else None
        return ImageData(self.train.to(device), self.test.to(device), validation, self.mean, self.std)


@dataclass
class Splits:
    """The three roles a run uses: train to fit, val to select, test once at the end."""

    train: ImageSplit
    val: ImageSplit
    test: ImageSplit


def preprocess(
    images: Sequence, labels: list[int], processor, what: str, progress=None, window: tuple[float, float] | None = None
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Resize and crop every image once with the model's own processor, keeping uint8.

    Every image is tried before failing, so the error names all the unreadable ones at once.
    `window` is the value range that images deeper than 8 bits are scaled from (see `to_8bit`).
    """
    chunks, unreadable = [], []
    describe = getattr(images, "describe", str)
    task = progress.add_task(f"decode {what}", total=len(images)) if progress else None
    for start in range(0, len(images), CHUNK):
        batch = []
        for index in range(start, min(start + CHUNK, len(images))):
            try:
                batch.append(_rgb(images[index], window))
            except Exception as exc:  # noqa: BLE001 - PIL and datasets raise many types for one bad file
                unreadable.append((describe(index), exc))
        if batch and not unreadable:
            out = processor(batch, do_rescale=False, do_normalize=False, return_tensors="pt")["pixel_values"]
            chunks.append(out.round().clamp(0, 255).to(torch.uint8) if out.is_floating_point() else out)
        if progress:
            progress.advance(task, min(CHUNK, len(images) - start))
    if progress:
        progress.remove_task(task)
    if unreadable:
        names = first_few([name for name, _ in unreadable], shown=5)
        raise DataError(f"{what}: {len(unreadable)} of {len(images)} images cannot be decoded ({names}): {first_line(unreadable[0][1])}")
    return torch.cat(chunks), torch.tensor(labels, dtype=torch.long)


def _rgb(image, window: tuple[float, float] | None = None):
    """Decode now (PIL opens lazily) and convert to RGB. Images deeper than 8 bits are scaled into
    8 bits first (`to_8bit`): PIL's own conversion would clip every value above 255 to white."""
    image.load()
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = to_8bit(image, window)
    return image.convert("RGB")  # 1, L, P, RGBA (alpha dropped), CMYK, ...: PIL's conversion


def to_8bit(image, window: tuple[float, float] | None = None):
    """A 16-bit, 32-bit integer or float single-channel image as an 8-bit ("L") one, scaled linearly
    from a window onto 0..255. The window is `window` when given (values outside it clip: a chosen
    window, as a CT's); otherwise the mode's declared range, 0..65535 for I;16 (and I;16B/L/N),
    and for I (int32) and F (float), which declare none, the image's own minimum..maximum (a
    constant image becomes black). NaN or infinite pixels are refused, not guessed at."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{image.mode} image has NaN or infinite pixel values")
    if window is not None:
        low, high = window
    elif image.mode.startswith("I;16"):
        low, high = (-32768, 32767) if image.mode == "I;16S" else (0, 65535)
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    scaled = (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), mode="L")


def make_splits(data: ImageData, val_fraction: float, seed: int, class_names: Sequence[str] = (), selects: bool = True) -> Splits:
    """A stratified, seeded validation split carved from train, unless the dataset has its own
    (`class_names` name the classes in errors; by label otherwise). A run that selects nothing on
    it (`selects=False`: nothing trains) settles for a plain random split where classes are too
    small to stratify."""
    if data.validation is not None:
        return Splits(data.train, data.validation, data.test)
    from sklearn.model_selection import train_test_split

    labels = data.train.labels.cpu().numpy()
    problem = _unsplittable(labels, val_fraction, class_names)
    if problem and selects:
        raise DataError(f"cannot carve a stratified validation split ({val_fraction:.0%} of train): {problem}; add training images, change val_fraction, or declare the dataset's validation_split")
    try:
        idx_train, idx_val = train_test_split(
            range(len(labels)), test_size=val_fraction, stratify=None if problem else labels, random_state=seed
        )
    except ValueError as exc:
        raise DataError(f"cannot carve a stratified validation split ({val_fraction:.0%} of train): {exc}") from exc
    return Splits(
        data.train.subset(torch.tensor(sorted(idx_train))),
        data.train.subset(torch.tensor(sorted(idx_val))),
        data.test,
    )


def _unsplittable(labels, val_fraction: float, class_names: Sequence[str]) -> str:
    """Why scikit-learn cannot stratify `labels` into train and validation, in our words, or ""."""
    import math

    import numpy as np

    present, counts = np.unique(labels, return_counts=True)
    single = [class_names[c] if c < len(class_names) else f"label {c}" for c, n in zip(present, counts, strict=True) if n < 2]
    if single:
        return f"{'class' if len(single) == 1 else 'classes'} {first_few([repr(name) for name in single])} {'has' if len(single) == 1 else 'have'} a single training image, and each class needs one on both sides"
    val = math.ceil(val_fraction * len(labels))
    if min(val, len(labels) - val) < len(present):
        side = "validation" if val < len(present) else "training"
        return f"{len(labels)} training images leave {min(val, len(labels) - val)} for {side}, fewer than the {len(present)} classes each side must hold"
    return ""


def normalize(pixels: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 pixels to the float input CLIP expects, on whatever device `pixels` lives."""
    return (pixels.float().div_(255) - mean) / std
