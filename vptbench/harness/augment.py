"""On-device augmentation of training batches: random resized crop and horizontal flip (CoOp's
recipe, torchvision's RandomResizedCrop + RandomHorizontalFlip), for a whole batch in one
sampling op, every draw from the run's seeded generator."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
TRIES = 10  # as torchvision: after ten crops that do not fit, a centre crop


def crop_and_flip(pixels: Tensor, generator: torch.Generator, scale: tuple[float, float] = SCALE, ratio: tuple[float, float] = RATIO) -> Tensor:
    """Each image of the (N, C, H, W) batch cropped at random (a `scale` share of its area, an aspect
    ratio within `ratio`, log-uniform), resized back to H × W (bilinear) and flipped left-right with
    probability 0.5. Same shape, dtype and device; integer pixels stay integers (rounded).

    The draws are made on the CPU from `generator` (a run's batch-order generator), so a seed gives
    the same crops on every device."""
    n, _, height, width = pixels.shape
    if n == 0:
        return pixels
    area = height * width
    target = area * torch.empty(n, TRIES).uniform_(*scale, generator=generator)
    aspect = torch.exp(torch.empty(n, TRIES).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator))
    w, h = (target * aspect).sqrt().round(), (target / aspect).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first try that fits, as torchvision takes it
    found = fits.any(dim=1)
    fallback_w, fallback_h = _centre_crop(width, height, ratio)
    w = torch.where(found, w.gather(1, first).squeeze(1), float(fallback_w))
    h = torch.where(found, h.gather(1, first).squeeze(1), float(fallback_h))
    offsets = torch.rand(n, 2, generator=generator)
    top = torch.where(found, (offsets[:, 0] * (height - h + 1)).floor(), ((height - h) / 2).floor())
    left = torch.where(found, (offsets[:, 1] * (width - w + 1)).floor(), ((width - w) / 2).floor())
    flip = torch.rand(n, generator=generator) < 0.5

    # the crop as an affine map of normalised coordinates (align_corners=False: pixel edges at ±1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -w / width, w / width)
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    dtype = pixels.dtype if pixels.is_floating_point() else torch.float32
    theta = theta.to(device=pixels.device, dtype=dtype)
    grid = functional.affine_grid(theta, [n, pixels.shape[1], height, width], align_corners=False)
    out = functional.grid_sample(pixels.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
    if pixels.is_floating_point():
        return out
    info = torch.iinfo(pixels.dtype)
    return out.round_().clamp_(info.min, info.max).to(pixels.dtype)


def _centre_crop(width: int, height: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return width, round(width / min(ratio))
    if in_ratio > max(ratio):
        return round(height * max(ratio)), height
    return width, height
