"""A search's space checked against what it tunes, before any model loads: every dimension names a
training setting or a param of the experiment's tuner, and every value it can take is one that
setting or param accepts. Ranges come out typed by their field: integers for a whole-number
setting, decimals for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vptbench.errors import ConfigError
from vptbench.registry import Suite, Training
from vptbench.registry.params import validate_params
from vptbench.registry.schema import Dimension, Range
from vptbench.registry.search import ResolvedSearch, continuous, resolve_search

GRID_LIMIT = 10_000  # points a grid may have: more is a typo, not a plan


def search_for(suite_name: str, suite: Suite, experiment_id: str, training: Training, config: type[BaseModel], config_path: Path) -> ResolvedSearch | None:
    """The experiment's search, checked against its training settings and its tuner's params; a
    tuner param in the suite's space applies to the experiments whose tuner has it."""
    spec = suite.experiments[experiment_id]
    own = spec.search.space if spec.search else None
    suite_path, own_path = f"suites.{suite_name}.search", f"suites.{suite_name}.experiments.{experiment_id}.search"
    fields = config.model_fields
    if unknown := [name for name in (own.params if own else {}) if name not in fields]:
        raise ConfigError(f"{config_path}: {own_path}.space.params.{unknown[0]}: not a param of tuner '{spec.tuner}' (its params: {', '.join(fields) or 'none'})")
    shared, others = suite.search, []
    if shared is not None:  # the suite's params of other tuners left out before resolving: a grid's size counts this tuner's only
        others = [name for name in shared.space.params if name not in fields]
        mine = {name: d for name, d in shared.space.params.items() if name in fields}
        shared = shared.model_copy(update={"space": shared.space.model_copy(update={"params": mine})})
    search = resolve_search(shared, spec.search, list(suite.training.seeds))
    if search is None or (others and not search.dimensions()):
        return None  # (the latter) the suite's space tunes other tuners' params only: this one runs untuned
    where = {name: f"{own_path if own and name in own.training() else suite_path}.space.{name}" for name in search.training}
    where |= {f"params.{name}": f"{own_path if own and name in own.params else suite_path}.space.params.{name}" for name in search.params}
    where["sampler"] = f"{own_path if spec.search and spec.search.sampler else suite_path}.sampler"
    if not search.dimensions():
        raise ConfigError(f"{config_path}: {own_path if spec.search else suite_path}.space: nothing to search: name a training setting (such as lr) or a tuner param under `params`")
    return check_search(search, training, config, spec.params, where, config_path)


def check_suite_search(suite_name: str, suite: Suite, plans: list[tuple[BaseModel | None, ResolvedSearch | None]], config_path: Path) -> None:
    """What holds across a suite's searches, given each planned experiment's (tuner config, search):
    a tuner param in the suite's space is some tuner's, and every strategy ends with the same final
    seeds (the final runs are compared seed by seed)."""
    if suite.search is not None:
        known = {name for config, _ in plans if config is not None for name in type(config).model_fields}
        every_tuner = len(plans) == len(suite.experiments) and all(config is not None for config, _ in plans)  # a broken plugin's params are unknown
        if unknown := [name for name in suite.search.space.params if name not in known and every_tuner]:
            raise ConfigError(f"{config_path}: suites.{suite_name}.search.space.params.{unknown[0]}: a param of none of the suite's tuners")
    finals = {tuple(search.final_seeds) for _, search in plans if search}
    if len(finals) > 1:
        raise ConfigError(f"{config_path}: suites.{suite_name}: experiments' searches end with different final_seeds ({' vs '.join(map(str, map(list, finals)))}); set final_seeds on the suite's search")


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
