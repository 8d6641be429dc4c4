"""The `search` table: which training settings and tuner params a suite tunes on validation, and
with what budget. A suite's table is inherited by its experiments; an experiment's own table
changes the keys it sets, and its space adds or replaces dimensions one by one."""

from __future__ import annotations

from typing import Any, Literal

from vptbench.registry.schema import Dimension, Range, Search, Seed, Strict


class ResolvedSearch(Strict):
    """An experiment's search with everything inherited filled in, as run.json records it."""

    trials: int
    sampler: Literal["tpe", "random", "grid"]
    pruner: Literal["none", "median", "hyperband"]
    final_seeds: list[Seed]
    parallel: int
    seed: Seed
    training: dict[str, Dimension] = {}  # the training settings' dimensions
    params: dict[str, Dimension] = {}  # the tuner params' dimensions

    def dimensions(self) -> dict[str, Dimension]:
        """Every dimension by the name a trial's values use: `lr`, `params.num_tokens`."""
        return {**self.training, **{f"params.{name}": d for name, d in self.params.items()}}

    def as_table(self) -> Search:
        """This search as a table of its own, as a resume reads it back from run.json."""
        return Search.model_validate({**self.model_dump(exclude={"training", "params"}), "space": {**self.training, "params": self.params}})

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a grid search, in a fixed order."""
        import itertools

        names = list(self.dimensions())
        values = [d.values() if isinstance(d, Range) else d for d in self.dimensions().values()]
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*values)]


def resolve_search(suite: Search | None, experiment: Search | None, seeds: list[int]) -> ResolvedSearch | None:
    """The search an experiment runs (None: it runs untuned), the experiment's keys over the suite's."""
    if suite is None and experiment is None:
        return None
    tables = [t for t in (suite, experiment) if t is not None]
    merged: dict[str, Any] = {"sampler": "tpe", "pruner": "median", "final_seeds": seeds, "parallel": 1, "seed": 0}
    training: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for table in tables:
        merged |= table.model_dump(exclude={"space"}, exclude_none=True)
        training |= table.space.training()
        params |= table.space.params
    search = ResolvedSearch(**{"trials": DEFAULT_TRIALS, **merged}, training=training, params=params)
    if search.sampler == "grid" and not any(d.get("trials") for d in (t.model_dump() for t in tables)) and not any(map(continuous, search.dimensions().values())):
        search.trials = max(1, len(search.grid()))  # a grid's budget is its size unless a table sets one
    return search


DEFAULT_TRIALS = 20


def continuous(dimension: Dimension) -> bool:
    return isinstance(dimension, Range) and not dimension.integer


def describe(dimension: Dimension) -> str:
    """A dimension as `list` and the report show it."""
    if isinstance(dimension, Range):
        return f"{dimension.low:g}–{dimension.high:g}" + (" (log)" if dimension.log else "")
    return "{" + ", ".join(str(v) for v in dimension) + "}"
