"""Seed every generator a run touches, so the same config and seed give the same numbers."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch, ask for deterministic kernels, return a batch-order generator.
    On CPU the same seed gives the same bits; on CUDA some kernels (attention's backward) have no
    deterministic version, so results agree closely but not always bit for bit."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # no NaN-filling of every fresh CUDA buffer: correct kernels never read uninitialised memory
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]  # a property of the module's class, unseen by mypy
    torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
