"""A search as `list` and `run --dry-run` show it: its space, its budget, the trials it would run.
Nothing is loaded or trained: all of it is read off the resolved, checked search."""

from __future__ import annotations

from typing import Any

from vptbench.cli.options import count
from vptbench.registry.schema import Range, Suite
from vptbench.registry.search import DEFAULT_TRIALS, ResolvedSearch, describe

PRUNERS = {"none": "no pruning", "median": "median pruning", "hyperband": "hyperband pruning"}
GRID_POINTS_SHOWN = 3


def space_text(search: ResolvedSearch, sep: str = ", ") -> str:
    """`lr 0.0001–0.03 (log), weight_decay {0, 0.0001}, params.num_tokens {4, 8}`."""
    return sep.join(f"{name} {describe(dimension)}" for name, dimension in search.dimensions().items())


def trial_epochs(search: ResolvedSearch, epochs: int) -> int:
    """The most epochs the trials can train in all: each trains the experiment's epochs (the
    largest a searched `epochs` can take); pruning and early stopping only lower it."""
    if (dimension := search.training.get("epochs")) is not None:
        epochs = int(dimension.high) if isinstance(dimension, Range) else max(int(v) for v in dimension)
    return search.trials * epochs


def seeds_text(seeds: list[int]) -> str:
    shown: list[Any] = list(seeds) if len(seeds) <= 6 else [*seeds[:3], "…", seeds[-1]]
    return ", ".join(map(str, shown))


def how(search: ResolvedSearch) -> str:
    """`tpe, median pruning, 2 at a time`."""
    at_once = "one at a time" if search.parallel == 1 else f"{search.parallel} at a time"
    return f"{search.sampler}, {PRUNERS[search.pruner]}, {at_once}"


def point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}" for name, value in point.items())


def grid_text(search: ResolvedSearch) -> str:
    """A grid's size and its first points: `grid of 9 points: lr=0.001 weight_decay=0; …`."""
    points = search.grid()
    first = "; ".join(point_text(p) for p in points[:GRID_POINTS_SHOWN])
    return f"grid of {count(len(points), 'point')}: {first}" + ("; …" if len(points) > GRID_POINTS_SHOWN else "")


def search_line(experiment_id: str, search: ResolvedSearch, epochs: int, seeds: list[int]) -> str:
    """The trials a search would run, then its final runs, as one line."""
    line = f"{experiment_id}: {count(search.trials, 'trial')} ({how(search)}, ≤ {trial_epochs(search, epochs):,} epochs) over {space_text(search)}"
    if search.sampler == "grid":
        line += f" — {grid_text(search)}"
    return line + f", then {count(len(seeds), 'final run')} (seeds {seeds_text(seeds)})"


def suite_note(suite: Suite) -> str:
    """How a suite searches, for the suites table: `search: 8 trials` (`""` when it does not)."""
    if suite.search is not None:
        if suite.search.trials is not None:
            return f"search: {count(suite.search.trials, 'trial')}"
        return "search: grid" if suite.search.sampler == "grid" else f"search: {count(DEFAULT_TRIALS, 'trial')}"
    if own := [experiment_id for experiment_id, e in suite.experiments.items() if e.search is not None]:
        return f"search: {', '.join(own)}"
    return ""


def add_search(rows: list[dict], experiments: list) -> None:
    """A dry run's rows with each experiment's resolved search (None: untuned), and why a searched
    one would not be (`search_note`): the search stage skips a tuner with nothing to train."""
    by_id = {e.id: e for e in experiments}
    for row in rows:
        search = by_id[row["experiment"]].search
        row["search"] = search.model_dump(mode="json") if search else None
        note = ""
        if search and row["status"] != "ok":
            note = "not searched: its tuner could not be built"
        elif search and row["trainable_params"] == 0:
            note = "not searched: nothing to train"
        row["search_note"] = note


def dry_run_lines(rows: list[dict], experiments: list, seeds: list[int]) -> list[str]:
    """A line per experiment of a searched suite: the trials it would run, then its final runs."""
    if not any(e.search for e in experiments):
        return []
    notes = {row["experiment"]: row.get("search_note", "") for row in rows}
    lines = []
    for e in experiments:
        if e.search is None or notes.get(e.id):
            lines.append(f"{e.id}: {notes.get(e.id) or 'not searched'}, then {count(len(seeds), 'run')} (seeds {seeds_text(seeds)})")
        else:
            lines.append(search_line(e.id, e.search, e.training.epochs, seeds))
    return lines
