"""A search's results in the run directory: each trial's record, Optuna's study journal, and a
summary per strategy of what was tried, what won and what it cost.

    search/study.journal         Optuna's journal: what a resume continues from
    search/trials/E3-trial4.json a trial's record (validation only, never test numbers)
    search/summary.json          SearchSummary: defaults, best values, counts, compute spent
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vptbench.results.io import read_json, write_json
from vptbench.results.records import RunRecord

SEARCH_DIR = "search"
STUDY_FILE = "study.journal"
TRIALS_DIR = "trials"
SUMMARY_FILE = "summary.json"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StrategySearch(Strict):
    """One experiment's search: its space and budget, the untuned and the chosen values, and cost."""

    experiment: str
    tuner: str
    search: dict[str, Any]  # the resolved search: trials, sampler, pruner, final_seeds, parallel, seed, training, params
    defaults: dict[str, Any]  # each searched dimension's untuned value, by dimension (`lr`, `params.num_tokens`)
    best: dict[str, Any] | None = None  # the chosen values; None when no trial finished (the final runs use the defaults)
    best_trial: int | None = None
    best_val_accuracy: float | None = None
    default_val_accuracy: float | None = None  # of the trial that tried the defaults, when they lie in the space
    trials_run: int = 0  # counted against the budget: finished, pruned and failed alike
    pruned: int = 0
    failed: int = 0  # failed, diverged, crashed, out of memory, timed out
    interrupted: int = 0  # stopped by Ctrl-C or a kill: not counted, their slots asked again
    trial_epochs: int = 0
    trial_seconds: float = 0.0
    note: str = ""  # why it was not searched, e.g. nothing to train


class SearchSummary(Strict):
    experiments: list[StrategySearch]

    def budgets_differ(self) -> bool:
        return len({s.search["trials"] for s in self.experiments if not s.note}) > 1


def search_dir(run_dir: Path) -> Path:
    return run_dir / SEARCH_DIR


def save_trial_record(run_dir: Path, record: RunRecord) -> None:
    write_json(search_dir(run_dir) / TRIALS_DIR / f"{record.key}.json", record.json_data())


def load_trial_records(run_dir: Path) -> list[RunRecord]:
    """Every readable trial record, by experiment and trial number; an unreadable one is left out
    (the study journal, not these copies, is what a resume continues from)."""
    records = []
    for path in (search_dir(run_dir) / TRIALS_DIR).glob("*.json"):
        data, problem = read_json(path)
        if problem:
            continue
        try:
            records.append(RunRecord.model_validate(data))
        except ValidationError:
            continue
    return sorted(records, key=lambda r: (r.experiment, r.trial or 0))


def save_summary(run_dir: Path, summary: SearchSummary) -> None:
    write_json(search_dir(run_dir) / SUMMARY_FILE, summary.model_dump(mode="json"))


def load_summary(run_dir: Path) -> SearchSummary | None:
    """The run's search summary, or None for a run without a search (or with an unreadable one)."""
    data, problem = read_json(search_dir(run_dir) / SUMMARY_FILE)
    if problem:
        return None
    try:
        return SearchSummary.model_validate(data)
    except ValidationError:
        return None
