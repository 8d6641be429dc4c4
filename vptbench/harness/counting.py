"""Parameter counts, the same for every report, bench and check."""

from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total), each shared tensor counted once."""
    unique = {id(p): p for p in module.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)
