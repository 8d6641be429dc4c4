"""Learning-rate schedules, stepped once per optimiser step: a linear warm-up, then a constant,
cosine or step schedule over the epochs (the recipes of VPT and CoOp)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from vptbench.registry import Training


def lr_factor(training: Training, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of `lr` for optimiser step `step` (0 for the first step of training).

    Warm-up rises linearly from lr/steps to lr over its `warmup_epochs * steps_per_epoch` steps;
    cosine then decays to 0 over the remaining steps; step multiplies by `step_gamma` every
    `step_epochs` epochs, counted from the start of training (as torch's StepLR counts them)."""
    warmup = training.warmup_epochs * steps_per_epoch
    decay = max(1, training.epochs * steps_per_epoch - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if training.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / decay)))
        if training.schedule == "step":
            assert training.step_epochs is not None  # the schema requires it for this schedule
            return training.step_gamma ** (step // steps_per_epoch // training.step_epochs)
        return 1.0

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, training: Training, steps_per_epoch: int) -> LambdaLR | None:
    """The schedule of `training` over `optimizer`'s steps, or None for a constant lr without
    warm-up (the optimiser's lr is then never touched, exactly as before schedules existed)."""
    if training.schedule == "constant" and training.warmup_epochs == 0:
        return None
    return LambdaLR(optimizer, lr_factor(training, steps_per_epoch))


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimiser steps an epoch takes (the last batch may be short, never dropped)."""
    return max(1, math.ceil(images / batch_size))
