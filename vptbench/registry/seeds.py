"""The seed grammar of `--seeds`: `0,1,2`, `0-4` or a mix."""

from __future__ import annotations

import re

from vptbench.errors import UsageError

MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """Seeds are unique, in 0..2**32-1, and at most MAX_SEEDS of them; a bad part is named."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise UsageError("--seeds: name at least one seed, e.g. 0,1,2 or 0-4")
    if not all(parts):
        raise UsageError(f"--seeds: '{text}' has an empty part between commas")
    seeds: list[int] = []
    for part in parts:
        if not (match := re.fullmatch(r"([0-9]+)(?:\s*-\s*([0-9]+))?", part)):
            where = f" in '{text}'" if part != text.strip() else ""
            raise UsageError(f"--seeds: '{part}'{where} is not a seed like 3 or a range like 0-4")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise UsageError(f"--seeds: the range '{part}' runs backwards; write {last}-{first}")
        if last - first >= MAX_SEEDS - len(seeds):
            raise UsageError(f"--seeds: '{text}' asks for more than {MAX_SEEDS} seeds")
        seeds += range(first, last + 1)
    if max(seeds) >= 2**32:
        raise UsageError(f"--seeds: '{text}' must name seeds from 0 to {2**32 - 1}")
    if len(set(seeds)) < len(seeds):
        again = next(seed for i, seed in enumerate(seeds) if seed in seeds[:i])
        raise UsageError(f"--seeds: seed {again} is named twice in '{text}'")
    return seeds
