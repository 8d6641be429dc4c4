"""A search's report: trials.csv, the "## Search" section, its plots, report.json's `search` and
the console table, from a fake run directory (no training)."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console

from vptbench.reporting import write_reports
from vptbench.reporting.console import search_table
from vptbench.reporting.schema import Report
from vptbench.reporting.search import search_rows, trials_frame
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord
from vptbench.results.search import (
    SearchSummary,
    StrategySearch,
    load_summary,
    load_trial_records,
    save_summary,
    save_trial_record,
)

matplotlib.use("Agg")

LR = {"low": 1e-4, "high": 1e-1, "log": True}


def _history(epochs: int, val: float) -> list[dict]:
    return [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "val_loss": 1.0 / e, "val_accuracy": val, "train_seconds": 0.5} for e in range(1, epochs + 1)]


def _trial(experiment: str, trial: int, values: dict, val: float | None, status: str = "ok", epochs: int = 3) -> RunRecord:
    identity = {"experiment": experiment, "tuner": f"tuner-{experiment}", "seed": 0, "trial": trial, "trial_values": values, "status": status}
    if status not in ("ok", "pruned"):
        return RunRecord.model_validate({**identity, "error": "CUDA out of memory"})
    return RunRecord.model_validate({
        **identity, "trainable_params": 100, "total_params": 1000, "val_accuracy": val, "epochs_run": epochs,
        "train_seconds": 1.5 * epochs, "history": _history(epochs, val),
    })  # fmt: skip


def _run(experiment: str, seed: int, test: float) -> RunRecord:
    return RunRecord.model_validate({
        "experiment": experiment, "tuner": f"tuner-{experiment}", "seed": seed, "status": "ok", "trainable_params": 100,
        "total_params": 1000, "trainable_percent": 10.0, "val_accuracy": 0.8, "test_accuracy": test, "test_macro_f1": 0.7,
        "epochs_run": 3, "train_seconds": 4.0, "history": _history(3, 0.8),
        "per_class": [{"class": "a", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 50}, {"class": "b", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 50}],
        "confusion_matrix": [[45, 5], [5, 45]],
    })  # fmt: skip


def _strategy(experiment: str, trials: int, **fields) -> StrategySearch:
    search = {"trials": trials, "sampler": "tpe", "pruner": "median", "final_seeds": [0, 1], "parallel": 1, "seed": 0, "training": {"lr": LR, "weight_decay": [0, 0.0001]}, "params": {}}
    return StrategySearch(experiment=experiment, tuner=f"tuner-{experiment}", search=search, defaults={"lr": 0.001, "weight_decay": 0}, **fields)


def _meta(experiments: list[str]) -> RunManifest:
    return RunManifest.model_validate({
        "suite": "s", "seeds": [0, 1], "device": "cpu", "status": "finished", "started": "now", "environment": {"packages": {}},
        "config": {"model_name": "m", "dataset_name": "d"}, "plan": [f"{e}-seed{s}" for e in experiments for s in (0, 1)],
    })  # fmt: skip


E2_TRIALS = [  # in the order a search might finish them: trial 2 before trial 1
    _trial("E2", 0, {"lr": 0.001, "weight_decay": 0}, 0.70),
    _trial("E2", 2, {"lr": 0.003, "weight_decay": 0.0001, "params.num_tokens": 8}, 0.85),
    _trial("E2", 1, {"lr": 0.05, "weight_decay": 0}, None, status="oom"),
    _trial("E2", 3, {"lr": 0.0002, "weight_decay": 0}, 0.90, status="pruned", epochs=1),  # cut short: never chosen
    _trial("E2", 4, {"lr": 0.01, "weight_decay": 0.0001, "params.num_tokens": 16}, 0.80),
]
E3_TRIALS = [_trial("E3", 0, {"lr": 0.02, "weight_decay": 0}, 0.60), _trial("E3", 1, {"lr": 0.002, "weight_decay": 0}, 0.65)]


def _searched_run(tmp_path, e3_trials: int = 5):
    """A run directory whose search tried E2 with 5 trials and E3 with `e3_trials`, and E1 had nothing to tune."""
    summary = SearchSummary(experiments=[
        _strategy("E2", 5, best={"lr": 0.003, "weight_decay": 0.0001, "params.num_tokens": 8}, best_trial=2, best_val_accuracy=0.85,
                  default_val_accuracy=0.70, trials_run=5, pruned=1, failed=1, trial_epochs=10, trial_seconds=15.0),
        _strategy("E3", e3_trials, best={"lr": 0.002, "weight_decay": 0}, best_trial=1, best_val_accuracy=0.65,
                  trials_run=2, trial_epochs=6, trial_seconds=9.0),
        StrategySearch(experiment="E1", tuner="zero-shot", search={"trials": 1}, defaults={}, note="nothing to tune"),
    ])  # fmt: skip
    save_summary(tmp_path, summary)
    for trial in E2_TRIALS + E3_TRIALS:
        save_trial_record(tmp_path, trial)
    runs = [_run("E2", 0, 0.90), _run("E2", 1, 0.80), _run("E3", 0, 0.70), _run("E3", 1, 0.70)]
    return summary, runs


def test_trials_csv_has_every_trial_its_best_so_far_and_a_column_per_dimension(tmp_path):
    _, runs = _searched_run(tmp_path)
    written = write_reports(tmp_path, _meta(["E2", "E3"]), runs)
    assert tmp_path / "trials.csv" in written
    frame = pd.read_csv(tmp_path / "trials.csv")
    assert list(frame.columns) == [
        "experiment", "tuner", "trial", "status", "val_accuracy", "best_so_far", "epochs_run", "train_seconds", "error",
        "lr", "weight_decay", "params.num_tokens",
    ]  # fmt: skip
    assert frame[["experiment", "trial", "status"]].values.tolist() == [
        ["E2", 0, "ok"], ["E2", 1, "oom"], ["E2", 2, "ok"], ["E2", 3, "pruned"], ["E2", 4, "ok"], ["E3", 0, "ok"], ["E3", 1, "ok"],
    ]  # fmt: skip
    # the running max over finished trials: the failed one holds the best, a pruned 0.90 is never chosen
    assert frame["best_so_far"].tolist() == pytest.approx([0.70, 0.70, 0.85, 0.85, 0.85, 0.60, 0.65])
    assert frame["lr"].tolist() == pytest.approx([0.001, 0.05, 0.003, 0.0002, 0.01, 0.02, 0.002])
    assert frame.loc[frame["experiment"] == "E2", "params.num_tokens"].tolist()[2] == 8
    assert "8,," not in (tmp_path / "trials.csv").read_text() and ",8" in (tmp_path / "trials.csv").read_text()  # whole numbers: 8, not 8.0
    assert frame.loc[1, "error"] == "CUDA out of memory" and pd.isna(frame.loc[1, "val_accuracy"])


def test_trials_frame_of_no_trial_has_the_columns():
    assert list(trials_frame([]).columns)[:4] == ["experiment", "tuner", "trial", "status"]


def test_search_rows_show_defaults_tuned_values_accuracies_and_cost(tmp_path):
    summary, runs = _searched_run(tmp_path, e3_trials=2)
    e2, e3, e1 = search_rows(summary, runs)
    assert e2["Searched"] == "lr 0.0001–0.1 (log), weight_decay {0, 0.0001}"
    assert (e2["Default"], e2["Tuned"]) == ("lr 0.001, weight_decay 0", "lr 0.003, weight_decay 0.0001, params.num_tokens 8")
    assert (e2["Default val acc"], e2["Tuned val acc"], e2["Tuned test acc"]) == ("0.700", "0.850", "0.850 ± 0.071")
    assert (e2["Trials"], e2["Trial epochs"], e2["Trial time"]) == ("5 of 5, 1 pruned, 1 failed", "10", "15.0 s")
    assert (e3["Default val acc"], e3["Tuned test acc"]) == ("–", "0.700 ± 0.000")
    assert (e1["Note"], e1["Trials"], e1["Tuned"]) == ("nothing to tune", "–", "–")


def test_the_markdown_section_says_when_budgets_differ(tmp_path):
    _, runs = _searched_run(tmp_path, e3_trials=2)
    write_reports(tmp_path, _meta(["E2", "E3"]), runs, ("md",))
    markdown = (tmp_path / "report.md").read_text()
    section = markdown[markdown.index("## Search") : markdown.index("## Per experiment")]
    assert "never see the test split" in section and "sampler tpe, pruner median" in section and "final seeds (0, 1)" in section
    assert "**Budgets differ: E2 5 trials, E3 2 trials — compare with care.**" in section
    e2_row = next(line for line in section.splitlines() if line.startswith("| E2 "))
    assert "| lr 0.003, weight_decay 0.0001, params.num_tokens 8 " in e2_row and "| lr 0.001, weight_decay 0 " in e2_row
    assert "nothing to tune" in section and "0.850 ± 0.071" in section
    assert "![search sensitivity](search_sensitivity.png)" in section and "![search progress](search_progress.png)" in section
    assert not (tmp_path / "trials.csv").exists()  # md only


@pytest.mark.slow  # over 1 s: whole runs or plots
def test_equal_budgets_give_no_warning_and_the_plots_are_pngs_that_show_something(tmp_path):
    _, runs = _searched_run(tmp_path, e3_trials=5)
    written = write_reports(tmp_path, _meta(["E2", "E3"]), runs)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Search" in markdown and "5 trials per strategy" in markdown and "udgets differ" not in markdown
    for name in ("search_sensitivity.png", "search_progress.png"):
        assert tmp_path / name in written
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and len(np.unique(np.asarray(image.convert("L")))) > 10  # not blank


def test_report_json_carries_the_search(tmp_path):
    summary, runs = _searched_run(tmp_path)
    write_reports(tmp_path, _meta(["E2", "E3"]), runs, ("json",))
    data = json.loads((tmp_path / "report.json").read_text())
    report = Report.model_validate(data)
    assert report.search is not None and SearchSummary.model_validate(report.search["summary"]) == summary
    assert [(t["experiment"], t["trial"]) for t in report.search["trials"]] == [(t.experiment, t.trial) for t in load_trial_records(tmp_path)]
    assert all(t["test_accuracy"] is None for t in report.search["trials"])


def test_a_run_without_a_search_reports_as_before(tmp_path):
    runs = [_run("E2", 0, 0.9), _run("E2", 1, 0.8)]
    written = write_reports(tmp_path, _meta(["E2"]), runs)
    assert load_summary(tmp_path) is None and not (tmp_path / "trials.csv").exists()
    assert not any(p.name.startswith("search") for p in written) and not list(tmp_path.glob("search*"))
    assert "## Search" not in (tmp_path / "report.md").read_text()
    assert "search" not in json.loads((tmp_path / "report.json").read_text())


def test_a_search_whose_trials_all_failed_reports_without_plots(tmp_path):
    save_summary(tmp_path, SearchSummary(experiments=[_strategy("E2", 2, trials_run=2, failed=2, trial_epochs=0)]))
    save_trial_record(tmp_path, _trial("E2", 0, {"lr": 0.05, "weight_decay": 0}, None, status="failed"))
    written = write_reports(tmp_path, _meta(["E2"]), [_run("E2", 0, 0.5)])
    assert not any(p.name.startswith("search_") for p in written)
    markdown = (tmp_path / "report.md").read_text()
    assert "no trial finished: the final runs used the defaults" in markdown
    assert pd.read_csv(tmp_path / "trials.csv")["best_so_far"].isna().all()


def test_the_console_table_keeps_the_key_columns_on_a_narrow_terminal(tmp_path):
    summary, runs = _searched_run(tmp_path)
    rows = search_rows(summary, runs)
    wide, narrow = Console(width=400, record=True), Console(width=60, record=True)
    wide.print(search_table(rows, "Search", wide.width))
    narrow.print(search_table(rows, "Search", narrow.width))
    assert "lr 0.003, weight_decay 0.0001, params.num_tokens 8" in wide.export_text() and "Left out" not in wide.export_text()
    text = narrow.export_text()
    assert all(len(line) <= 60 for line in text.splitlines())
    assert "0.850 ± 0.071" in text and "Left out at this width:" in text and "Searched" in text.split("Left out")[1]


def test_a_search_with_nothing_to_tune_says_so(tmp_path):
    save_summary(tmp_path, SearchSummary(experiments=[StrategySearch(experiment="E1", tuner="zero-shot", search={"trials": 4}, defaults={}, note="nothing to tune")]))
    write_reports(tmp_path, _meta(["E1"]), [_run("E1", 0, 0.5)], ("md", "csv"))
    markdown = (tmp_path / "report.md").read_text()
    assert "no strategy had anything to tune" in markdown and "| E1 " in markdown and "udgets differ" not in markdown
    assert pd.read_csv(tmp_path / "trials.csv").empty


def test_print_search_prints_the_table_and_the_budget_warning_only_for_a_searched_run(tmp_path, capsys):
    from vptbench.cli.render import print_search

    print_search(tmp_path / "unsearched", [])
    assert capsys.readouterr().out == ""
    _, runs = _searched_run(tmp_path, e3_trials=2)
    print_search(tmp_path, runs)
    captured = capsys.readouterr()
    assert "0.850 ± 0.071" in captured.out and "Budgets differ: E2 5 trials, E3 2 trials" in " ".join((captured.out + captured.err).split())
