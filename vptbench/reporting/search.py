"""A search's report: per strategy the untuned and the tuned settings and accuracies, what the
search cost, every trial as a CSV row, and plots of validation accuracy against the learning rate
and of the best so far against trials. Trials are scored on validation only; the test numbers
shown are those of the final runs, which ran the chosen settings."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vptbench.registry.schema import Range
from vptbench.registry.search import describe
from vptbench.reporting.console import NUMERIC
from vptbench.results.records import RunRecord, Status
from vptbench.results.search import SearchSummary, StrategySearch

TRIALS_COLUMNS = ["experiment", "tuner", "trial", "status", "val_accuracy", "best_so_far", "epochs_run", "train_seconds", "error"]
SEARCH_PLOTS = {"sensitivity": "search_sensitivity.png", "progress": "search_progress.png"}
SEARCH_COLUMNS = ["Experiment", "Tuner", "Searched", "Default", "Tuned", "Default val acc", "Tuned val acc", "Tuned test acc", "Trials", "Trial epochs", "Trial time", "Note"]

# The trials a search may choose: Optuna's best is a completed trial, never a pruned one (its
# validation accuracy is that of a run cut short), so best-so-far counts these only.
CHOSEN = (Status.ok,)
PLOTTED = (Status.ok, Status.pruned)  # those measured on validation; the others are left out of the plots


def trials_frame(trials: list[RunRecord]) -> pd.DataFrame:
    """One row per trial, each experiment's in trial order (experiments as first seen): its status,
    validation accuracy, the best a finished trial reached up to it, its cost, and its values."""
    order = {e: i for i, e in enumerate(dict.fromkeys(t.experiment for t in trials))}
    trials = sorted(trials, key=lambda t: (order[t.experiment], t.trial if t.trial is not None else -1))
    dimensions = list(dict.fromkeys(name for t in trials for name in t.trial_values))
    rows: list[dict[str, Any]] = []
    best: dict[str, float] = {}
    for t in trials:
        if t.status in CHOSEN and t.val_accuracy is not None and not math.isnan(t.val_accuracy):
            best[t.experiment] = max(best.get(t.experiment, -math.inf), t.val_accuracy)
        rows.append({
            "experiment": t.experiment, "tuner": t.tuner, "trial": t.trial, "status": t.status.value, "val_accuracy": t.val_accuracy,
            "best_so_far": best.get(t.experiment), "epochs_run": t.epochs_run, "train_seconds": t.train_seconds, "error": t.error,
            **{name: t.trial_values.get(name) for name in dimensions},
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=[*TRIALS_COLUMNS, *dimensions])
    whole = ["trial", "epochs_run", *(name for name in dimensions if _integers(t.trial_values.get(name) for t in trials))]
    return frame.astype({name: "Int64" for name in whole}).astype({name: "float64" for name in ("val_accuracy", "best_so_far", "train_seconds")})


def _integers(values) -> bool:
    """Whether a dimension's values are whole numbers (kept so in the CSV: 8, not 8.0)."""
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int) and not isinstance(v, bool) for v in present)


def trials_csv_text(trials: list[RunRecord]) -> str:
    return trials_frame(trials).to_csv(index=False)


def dimensions(strategy: StrategySearch) -> dict[str, Any]:
    """A strategy's searched dimensions by the names trials use (`lr`, `params.num_tokens`), each a
    `Range` or a list of choices."""
    named = {**strategy.search.get("training", {}), **{f"params.{name}": d for name, d in strategy.search.get("params", {}).items()}}
    return {name: Range.model_validate(d) if isinstance(d, dict) else d for name, d in named.items()}


def search_rows(summary: SearchSummary, runs: list[RunRecord]) -> list[dict[str, str]]:
    """Per strategy, the strings the console and Markdown tables show (`SEARCH_COLUMNS`)."""
    rows = []
    for s in summary.experiments:
        tested = [r.test_accuracy for r in runs if r.experiment == s.experiment and r.status == Status.ok and r.test_accuracy is not None]
        searched = not s.note
        rows.append({
            "Experiment": s.experiment,
            "Tuner": s.tuner,
            "Searched": ", ".join(f"{name} {describe(d)}" for name, d in dimensions(s).items()) or "–",
            "Default": _values(s.defaults),
            "Tuned": _values(s.best) if s.best else "–",
            "Default val acc": _num(s.default_val_accuracy),
            "Tuned val acc": _num(s.best_val_accuracy),
            "Tuned test acc": _mean_std(tested),
            "Trials": _trials(s) if searched else "–",
            "Trial epochs": f"{s.trial_epochs:,}" if searched else "–",
            "Trial time": f"{s.trial_seconds:,.1f} s" if searched else "–",
            "Note": s.note or ("no trial finished: the final runs used the defaults" if s.best is None else ""),
        })  # fmt: skip
    return rows


def shown_columns(rows: list[dict[str, str]]) -> list[str]:
    """The columns worth showing: all but an empty Note."""
    return [c for c in SEARCH_COLUMNS if c != "Note" or any(row[c] for row in rows)]


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_value(v)}" for name, v in values.items()) or "–"


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _trials(s: StrategySearch) -> str:
    interrupted = f", {s.interrupted} interrupted" if s.interrupted else ""
    return f"{s.trials_run} of {s.search['trials']}, {s.pruned} pruned, {s.failed} failed{interrupted}"


def budgets_sentence(summary: SearchSummary) -> str:
    """The sentence "Budgets differ: E2 8 trials, E3 4 trials — compare with care.", or "" when they agree."""
    if not summary.budgets_differ():
        return ""
    budgets = ", ".join(f"{s.experiment} {s.search['trials']} trial{'' if s.search['trials'] == 1 else 's'}" for s in summary.experiments if not s.note)
    return f"Budgets differ: {budgets} — compare with care."


def protocol_sentence(summary: SearchSummary) -> str:
    searched = [s for s in summary.experiments if not s.note]
    if not searched:
        return "The suite asked for a search, but no strategy had anything to tune: the final runs used the defaults."

    def shared(key: str, show: Callable[[Any], str] = str) -> str:
        values = {s.experiment: show(s.search.get(key)) for s in searched}
        if len(set(values.values())) == 1:
            return next(iter(values.values()))
        return ", ".join(f"{v} ({e})" for e, v in values.items())

    budget = f"{searched[0].search['trials']} trials per strategy" if not summary.budgets_differ() else "a budget of trials per strategy (below)"
    seeds = shared("final_seeds", lambda seeds: ", ".join(map(str, seeds or [])))
    return (
        f"Each strategy's settings were searched first: {budget}, sampler {shared('sampler')}, pruner {shared('pruner')}. "
        "Trials are scored on the validation split only and never see the test split; each strategy's best "
        f"configuration then ran with its final seeds ({seeds}) and was tested once per seed: those are the runs the "
        "summary above reports. Trial epochs and time are what the search spent on top of them."
    )


def markdown_search_section(summary: SearchSummary, runs: list[RunRecord], trials: list[RunRecord], plots: list[Path]) -> list[str]:
    """report.md's "## Search" section, its plots embedded (named relative to the run directory)."""
    lines = ["## Search", "", protocol_sentence(summary), ""]
    if budgets := budgets_sentence(summary):
        lines += [f"**{budgets}**", ""]
    rows = search_rows(summary, runs)
    if rows:
        columns = shown_columns(rows)
        align = ["right" if c in NUMERIC else "left" for c in columns]
        frame = pd.DataFrame(rows, columns=columns)
        lines += [frame.to_markdown(index=False, disable_numparse=True, colalign=align), ""]
    lines += [f"{len(trials)} trial record{'' if len(trials) == 1 else 's'} in trials.csv (validation only, no test numbers).", ""]
    if plots:
        note = "Validation accuracy of every measured trial (hollow: pruned, at the epoch it stopped), and the best a finished trial had reached after each trial."
        lines += [note, ""] + [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in plots] + [""]
    return lines


def write_search_plots(run_dir: Path, summary: SearchSummary, trials: list[RunRecord]) -> list[Path]:
    """The sensitivity plot (validation accuracy against the learning rate, or else the first
    searched dimension) and best-so-far against trials; none without a measured trial."""
    from vptbench.reporting.plots import save_figure

    frame = trials_frame(trials)
    measured = frame[frame["status"].isin([s.value for s in PLOTTED]) & frame["val_accuracy"].notna()]
    if measured.empty:
        return []
    colors = {e: f"C{i % 10}" for i, e in enumerate(dict.fromkeys([*(s.experiment for s in summary.experiments), *frame["experiment"]]))}
    written = []
    if (dimension := _sensitivity_dimension(summary, measured)) is not None:
        written.append(save_figure(run_dir / SEARCH_PLOTS["sensitivity"], _sensitivity_figure(summary, measured, dimension, colors)))
    if measured["best_so_far"].notna().any():
        written.append(save_figure(run_dir / SEARCH_PLOTS["progress"], _progress_figure(frame, colors)))
    return written


def _sensitivity_dimension(summary: SearchSummary, measured: pd.DataFrame) -> str | None:
    """`lr` when a strategy searched it, else the first searched dimension any trial measured."""
    names = [name for s in summary.experiments for name in dimensions(s)]
    names = sorted(dict.fromkeys(names), key=lambda n: n != "lr")
    return next((n for n in names if n in measured and measured[n].notna().any()), None)


def _sensitivity_figure(summary: SearchSummary, measured: pd.DataFrame, dimension: str, colors: dict[str, str]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    points = measured[measured[dimension].notna()]
    values = points[dimension].infer_objects()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    for experiment, group in points.groupby("experiment", sort=False):
        color = colors[str(experiment)]
        x = group[dimension].astype(float) if numeric else group[dimension].astype(str)
        ok = group["status"] == Status.ok.value
        axes.scatter(x[ok], group["val_accuracy"][ok], color=color, label=str(experiment))
        if (~ok).any():
            axes.scatter(x[~ok], group["val_accuracy"][~ok], facecolors="none", edgecolors=color)
    logged = dimension == "lr" or any(isinstance(d := dimensions(s).get(dimension), Range) and d.log for s in summary.experiments)
    if numeric and logged and (values.astype(float) > 0).all():
        axes.set_xscale("log")
    label = "learning rate" if dimension == "lr" else dimension
    axes.set(xlabel=label, ylabel="validation accuracy", title=f"Validation accuracy against {label} (hollow: pruned)")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure


def _progress_figure(frame: pd.DataFrame, colors: dict[str, str]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for experiment, group in frame.groupby("experiment", sort=False):
        reached = group[group["best_so_far"].notna()]
        if reached.empty:
            continue
        axes.plot(reached["trial"].astype(int), reached["best_so_far"], drawstyle="steps-post", marker="o", markersize=3, color=colors[str(experiment)], label=str(experiment))
    axes.set(xlabel="trial", ylabel="best validation accuracy so far", title="Best finished trial so far")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure
