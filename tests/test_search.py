"""The search stage: trials scored on validation alone, a stop and resume that change nothing, the
study kept in the run directory, final runs at the values found."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import tiny_suite_toml
from test_search_inputs import EXPERIMENTS

from vptbench.harness.observer import QuietObserver
from vptbench.harness.planning import plan_for_resume, plan_from_registry
from vptbench.harness.suite import run_suite
from vptbench.harness.workbench import prepare
from vptbench.reporting.sink import ReportSink
from vptbench.results.search import load_summary, load_trial_records

SEARCHED = """
[suites.s.search]
trials = 4
parallel = 2
pruner = "median"
space = { lr = { low = 1e-3, high = 0.3, log = true }, weight_decay = [0, 1e-3] }
""" + EXPERIMENTS + """params = { num_tokens = 2 }
search = { trials = 3, space = { params = { num_tokens = [1, 2] } } }
"""


@pytest.fixture
def searched_config(tmp_path, tiny_model_dir, image_folder) -> Path:
    path = tmp_path / "benchmark.toml"
    path.write_text(tiny_suite_toml(tiny_model_dir, image_folder, SEARCHED, "epochs = 4, batch_size = 8"))
    return path


def _run(plan, run_dir: Path, observer=None, finished=None, bench=None):
    bench = bench or prepare(plan, "cpu")
    return run_suite(plan, bench, run_dir, observer or QuietObserver(), ReportSink(run_dir), finished)


def _chosen(run_dir: Path) -> dict:
    summary = load_summary(run_dir)
    assert summary is not None
    return {s.experiment: (s.best, s.best_val_accuracy) for s in summary.experiments}


@pytest.mark.slow  # over 1 s: whole runs or plots
def test_a_search_tunes_each_strategy_then_runs_its_best_values(searched_config, tmp_path):
    plan = plan_from_registry(searched_config, "s", None, None)
    result = _run(plan, tmp_path)
    summary = load_summary(tmp_path)
    assert summary is not None
    entries = {s.experiment: s for s in summary.experiments}
    assert entries["E1"].note == "not searched: nothing to train" and entries["E1"].trials_run == 0
    assert (entries["E2"].trials_run, entries["E3"].trials_run) == (4, 3)  # each its own budget
    assert summary.budgets_differ()
    trials = load_trial_records(tmp_path)
    assert [r.trial for r in trials if r.experiment == "E2"] == [0, 1, 2, 3]
    assert trials[0].trial_values == {"lr": 1e-3, "weight_decay": 0}  # the untuned settings come first
    assert entries["E2"].default_val_accuracy == trials[0].val_accuracy
    for record in trials:
        assert record.test_accuracy is None and record.per_class is None
    # the final runs ran the best trial's values, and the same seed gives the trial's validation accuracy
    manifest = json.loads((tmp_path / "run.json").read_text())
    for experiment in ("E2", "E3"):
        best = entries[experiment].best
        assert best is not None
        recorded = manifest["config"]["experiments"][experiment]
        assert recorded["training"]["lr"] == best["lr"] and recorded["training"]["weight_decay"] == best["weight_decay"]
        final = next(r for r in result.records if r.experiment == experiment)
        assert final.val_accuracy == pytest.approx(entries[experiment].best_val_accuracy)
    assert manifest["config"]["experiments"]["E3"]["params"]["num_tokens"] == entries["E3"].best["params.num_tokens"]
    assert all(r.status == "ok" and r.test_accuracy is not None for r in result.records)


def test_a_trial_never_touches_the_test_split(searched_config, tmp_path):
    """The test split of a trial is never moved, encoded for prediction nor scored: a poisoned split
    that fails on any use lets the whole search through."""
    from vptbench.harness.executors import InlineExecutor
    from vptbench.harness.search.engine import run_search

    class Poisoned:
        def __getattr__(self, name):
            raise AssertionError(f"the search touched the test split ({name})")

    plan = plan_from_registry(searched_config, "s", ["E1", "E3"], None)
    bench = prepare(plan, "cpu")
    poisoned = replace(bench, data=replace(bench.data, test=Poisoned()))
    tuned = run_search(plan, poisoned, tmp_path, QuietObserver(), InlineExecutor(), False, frozenset(), "start afresh")
    assert len(load_trial_records(tmp_path)) == 3
    assert tuned.experiments[1].training.lr != plan.experiments[1].training.lr or tuned.experiments[1].config != plan.experiments[1].config


class StopAfter(QuietObserver):
    """Ctrl-C in the middle of the `stop_at`-th trial, as a user's would land."""

    def __init__(self, stop_at: int) -> None:
        self.started, self.stop_at = 0, stop_at

    def run_started(self, experiment_id, seed, epochs):
        self.started += 1

    def epoch_done(self, record):
        if self.started == self.stop_at and record.epoch == 2:
            raise KeyboardInterrupt


@pytest.mark.slow  # two searches and a resume
def test_a_stopped_search_resumed_ends_as_an_uninterrupted_one(searched_config, tmp_path):
    plan = plan_from_registry(searched_config, "s", None, None)
    bench = prepare(plan, "cpu")
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir()
    stopped.mkdir()
    _run(plan, whole, bench=bench)
    with pytest.raises(KeyboardInterrupt):
        _run(plan, stopped, StopAfter(4), bench=bench)
    summary = load_summary(stopped)
    assert summary is not None and sum(s.interrupted for s in summary.experiments) == 1
    assert json.loads((stopped / "run.json").read_text())["status"] == "interrupted"
    resumed_plan, _, records = plan_for_resume(stopped)
    _run(resumed_plan, stopped, finished=records, bench=bench)
    assert _chosen(stopped) == _chosen(whole)
    counted = {s.experiment: (s.trials_run, s.interrupted) for s in load_summary(stopped).experiments}
    assert counted["E2"][0] == 4 and counted["E3"][0] == 3  # the interrupted trial's slot was asked again
    def tried(run_dir):  # by slot: the interrupted trial's number is skipped, its values asked again
        return [(r.experiment, r.trial_values, r.status, r.val_accuracy) for r in load_trial_records(run_dir) if r.status != "interrupted"]

    assert tried(stopped) == tried(whole)


def test_a_trial_left_running_by_a_kill_is_failed_as_interrupted_and_asked_again(searched_config, tmp_path):
    import optuna

    from vptbench.harness.search.study import INTERRUPTED, Study, open_storage

    plan = plan_from_registry(searched_config, "s", ["E2"], None)
    search = plan.experiments[0].search
    storage = open_storage(tmp_path, "start afresh")
    killed = Study.open(storage, "E2", search, {"lr": 1e-3, "weight_decay": 0}, 4)
    first = killed.ask(0)
    assert first.values == {"lr": 1e-3, "weight_decay": 0}
    reopened = Study.open(open_storage(tmp_path, "start afresh"), "E2", search, {"lr": 1.0, "weight_decay": 0}, 4)
    (trial,) = reopened.study.get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs[INTERRUPTED]
    assert reopened.counted() == 0 and reopened.remaining() == 4
    assert reopened.defaults == {"lr": 1e-3, "weight_decay": 0}  # the untuned ones, kept from the first start
    assert reopened.ask(0).values == first.values


def test_a_damaged_study_journal_is_named_with_the_command_to_start_afresh(tmp_path):
    from vptbench.errors import UsageError
    from vptbench.harness.search.study import open_storage

    journal = tmp_path / "search" / "study.journal"
    journal.parent.mkdir()
    journal.write_text('{not json\n{"op_code": 0}\n')  # a line cut short is not the last one
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(UsageError, match=r"study\.journal.*damaged.*start afresh with `vptbench run --all --suite s`"):
        open_storage(tmp_path, "vptbench run --all --suite s")
    assert (tmp_path / "run.json").read_text() == "{}"


@pytest.mark.slow  # over 1 s: whole runs or plots
def test_a_trial_whose_values_do_not_go_together_costs_one_trial(tmp_path, tiny_model_dir, image_folder):
    """Each value passes alone, a combination is refused (warm-up as long as training): that trial
    fails with the reason, the grid goes on and the best is chosen among the rest."""
    experiments = """
[suites.s.search]
sampler = "grid"
pruner = "none"
space = { epochs = [2, 4], warmup_epochs = [0, 3] }
[suites.s.experiments.E2]
tuner = "linear-probe"
"""
    config = tmp_path / "benchmark.toml"
    config.write_text(tiny_suite_toml(tiny_model_dir, image_folder, experiments, "epochs = 4, batch_size = 8"))
    plan = plan_from_registry(config, "s", None, None)
    assert plan.experiments[0].search.trials == 4  # a grid's budget: its size
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = _run(plan, run_dir)
    (entry,) = load_summary(run_dir).experiments
    assert (entry.trials_run, entry.failed) == (4, 1)
    (refused,) = [r for r in load_trial_records(run_dir) if r.status == "failed"]
    assert refused.trial_values == {"epochs": 2, "warmup_epochs": 3} and "the trial's values are refused" in refused.error
    assert entry.best is not None and entry.best != refused.trial_values
    assert [r.status for r in result.records] == ["ok"]


@pytest.mark.slow  # end to end through the CLI
def test_a_copied_report_keeps_its_search(searched_config, cli, tmp_path):
    code, _, err = cli("run", "E2", "--config", searched_config, "--output", tmp_path / "runs", "--quiet")
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    code, _, err = cli("report", run_dir, "--output", tmp_path / "copies")
    assert code == 0, err
    (copy,) = (tmp_path / "copies").iterdir()
    assert (copy / "trials.csv").read_text() == (run_dir / "trials.csv").read_text()
    assert "## Search" in (copy / "report.md").read_text()
