"""A search's space checked against what it tunes, before any model loads: every dimension names a
training setting or a param of the experiment's tuner, and every value it can take is one that
setting or param accepts. Ranges come out typed by their field: integers for a whole-number
setting, decimals for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vptbench.errors import ConfigError
from vptbench.registry import Training
from vptbench.registry.params import validate_params
from vptbench.registry.schema import Dimension, Range
from vptbench.registry.search import ResolvedSearch, continuous

GRID_LIMIT = 10_000  # points a grid may have: more is a typo, not a plan


def check_search(
    search: ResolvedSearch, training: Training, config: type[BaseModel], params: dict[str, Any], where: dict[str, str], config_path: Path
) -> ResolvedSearch:
    """`search` with its ranges typed, or a ConfigError naming the TOML path (`where`: each
    dimension's path, by the name `ResolvedSearch.dimensions` gives it) of every problem."""
    problems: list[str] = []
    typed_training = {}
    for name, dimension in search.training.items():
        typed_training[name] = _checked(dimension, lambda value, n=name: training.with_changes(**{n: value}), where[name], problems)
    typed_params = {}
    for name, dimension in search.params.items():
        path = where[f"params.{name}"]
        typed_params[name] = _checked(dimension, lambda value, n=name: validate_params(config, {**params, n: value}, config_path), path, problems)
    typed = search.model_copy(update={"training": typed_training, "params": typed_params})
    if search.sampler == "grid":
        for name, dimension in typed.dimensions().items():
            if continuous(dimension):
                problems.append(f"{where[name]}: a grid sampler takes lists of choices or whole-number ranges, not a continuous range")
        if not problems and len(typed.grid()) > GRID_LIMIT:
            problems.append(f"{where['sampler']}: the grid has {len(typed.grid()):,} points (at most {GRID_LIMIT:,})")
    if problems:
        raise ConfigError(f"{config_path}: " + "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
    return typed


def _checked(dimension: Dimension, accepts, path: str, problems: list[str]) -> Dimension:
    """The dimension, typed; its problem (the first value refused) added to `problems`."""
    values = [dimension.low, dimension.high] if isinstance(dimension, Range) else list(dimension)
    for value in values:
        if problem := _refusal(accepts, value):
            problems.append(f"{path}: {value!r} is refused ({problem})")
            return dimension
    if not isinstance(dimension, Range):
        return dimension
    whole = _refusal(accepts, _fraction_between(dimension)) != ""
    if whole and not dimension.integer:
        problems.append(f"{path}: takes whole numbers: write low and high without a decimal point")
    if whole:
        return dimension
    return dimension.model_copy(update={"low": float(dimension.low), "high": float(dimension.high)})


def _fraction_between(dimension: Range) -> float:
    """A value inside the range that is not a whole number: a setting that refuses it takes integers."""
    low, high = float(dimension.low), float(dimension.high)
    middle = low + 0.37 * (high - low)
    return middle if middle != int(middle) else middle + min(0.25, (high - middle) / 2)


def _refusal(accepts, value: Any) -> str:
    try:
        accepts(value)
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    except ConfigError as exc:
        return str(exc).rsplit(": ", 1)[-1]
    return ""
