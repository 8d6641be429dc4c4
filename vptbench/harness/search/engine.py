"""The search stage of a suite: each searched experiment's study asks for trials, the suite's
executor runs them (side by side on Ray), the driver tells their outcomes; then every strategy's
best values become the settings of its final runs.

Trials are asked in rounds: each study asks `parallel` trials at once, and the next round waits for
them all. So the trials asked never depend on the executor or on how fast a worker is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vptbench.errors import first_few, stop_reason
from vptbench.harness.executors import Executor, Pending
from vptbench.harness.guarded import failed_record
from vptbench.harness.observer import Observer
from vptbench.harness.planning import PlannedExperiment, SuitePlan
from vptbench.harness.search.study import INTERRUPTED, Study, open_storage
from vptbench.harness.search.trial import TrialSpec
from vptbench.harness.workbench import Workbench, trains
from vptbench.results.records import RunRecord, Status
from vptbench.results.rundir import append_traceback
from vptbench.results.search import SearchSummary, StrategySearch, load_trial_records, save_summary, save_trial_record


def run_search(
    plan: SuitePlan, bench: Workbench, run_dir: Path, observer: Observer, executor: Executor, retry_oom: bool, skip: frozenset[str], fresh: str
) -> SuitePlan:  # fmt: skip
    """Search every searched experiment (those in `skip` excepted) and return the plan of the final
    runs, each experiment at its best trial's values (its defaults when no trial finished). The
    summary is written however the search ends; `fresh` is the command that starts a new run."""
    searched = [e for e in plan.experiments if e.search is not None and e.id not in skip]
    if not searched:
        return plan
    storage = open_storage(run_dir, fresh)
    studies: dict[str, Study] = {}
    notes: dict[str, str] = {}
    for experiment in searched:
        assert experiment.search is not None
        if experiment.tuner is None:
            notes[experiment.id] = "not searched: its tuner could not be loaded"
        elif not trains(experiment, bench.model, bench.task):
            notes[experiment.id] = "not searched: nothing to train"
        else:
            studies[experiment.id] = Study.open(storage, experiment.id, experiment.search, defaults(experiment), experiment.training.epochs)
    by_id = {e.id: e for e in plan.experiments}
    observer.expect(sum(study.remaining() for study in studies.values()))
    try:
        while active := [study for study in studies.values() if study.remaining()]:
            _round(active, by_id, plan.seeds[0], bench, run_dir, observer, executor, retry_oom)
    finally:
        save_summary(run_dir, summarize(run_dir, searched, studies, notes))
    return replace(plan, experiments=[tuned(e, studies[e.id]) if e.id in studies else e for e in plan.experiments])


def _round(
    active: list[Study], by_id: dict[str, PlannedExperiment], seed: int, bench: Workbench, run_dir: Path, observer: Observer,
    executor: Executor, retry_oom: bool,
) -> None:  # fmt: skip
    """Ask each study's next trials, run them, tell their outcomes; a stop tells the trials it cut
    short as interrupted, then goes on up."""
    studies = studies_by_id(active)
    pending: Pending = []
    for study in active:
        counted, parallel = study.counted(), study.search.parallel
        for slot in range(counted, counted + min(parallel - counted % parallel, study.remaining())):  # to the end of its block
            spec = study.ask(slot)
            try:
                pending.append((with_values(by_id[study.experiment], spec), seed))
            except ValidationError as exc:  # a combination the settings refuse costs its trial, not the search
                problem = first_few([str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()])
                _keep(studies, failed_record(replace(by_id[study.experiment], trial=spec), seed, f"the trial's values are refused: {problem}"), run_dir, observer)
    runs = executor.run(bench, pending, observer, retry_oom)
    try:
        for record in runs:
            _keep(studies, record, run_dir, observer)
    except KeyboardInterrupt:
        in_flight = executor.in_flight()
        runs.close()
        for experiment, run_seed in in_flight:
            _keep(studies, failed_record(experiment, run_seed, stop_reason(), Status.interrupted), run_dir, observer)
        raise


def studies_by_id(studies: list[Study]) -> dict[str, Study]:
    return {study.experiment: study for study in studies}


def _keep(studies: dict[str, Study], record: RunRecord, run_dir: Path, observer: Observer) -> None:
    """The trial's record first (with its traceback), then the study's state: a stop between them
    leaves a trial that a resume runs again."""
    if record.traceback:
        append_traceback(run_dir, record.key, record.traceback)
    save_trial_record(run_dir, record)
    studies[record.experiment].tell(record)
    observer.run_done(record)


def defaults(experiment: PlannedExperiment) -> dict[str, Any]:
    """The untuned value of each searched dimension."""
    assert experiment.search is not None
    params = experiment.params()
    training = experiment.training.model_dump(mode="json")
    return {name: params.get(name.removeprefix("params.")) if name.startswith("params.") else training[name] for name in experiment.search.dimensions()}


def with_values(experiment: PlannedExperiment, spec: TrialSpec) -> PlannedExperiment:
    """The experiment with a trial's values as its settings and params (validated as the registry's)."""
    settings = {name: value for name, value in spec.values.items() if not name.startswith("params.")}
    params = {name.removeprefix("params."): value for name, value in spec.values.items() if name.startswith("params.")}
    config = type(experiment.config).model_validate({**experiment.params(), **params}) if params else experiment.config
    return replace(experiment, training=experiment.training.with_changes(**settings), config=config, trial=spec)


def tuned(experiment: PlannedExperiment, study: Study) -> PlannedExperiment:
    """The experiment as its final runs run it: at its best trial's values, or untouched."""
    best = study.best()
    if best is None:
        return experiment
    return replace(with_values(experiment, TrialSpec(best[0], best[2])), trial=None)


def summarize(run_dir: Path, searched: list[PlannedExperiment], studies: dict[str, Study], notes: dict[str, str]) -> SearchSummary:
    """What each strategy's search tried, chose and cost, from its study and its trial records."""
    import optuna

    records = load_trial_records(run_dir)
    entries = []
    for experiment in searched:
        assert experiment.search is not None
        entry = StrategySearch(
            experiment=experiment.id, tuner=experiment.spec.tuner, search=experiment.search.model_dump(mode="json"),
            defaults=defaults(experiment), note=notes.get(experiment.id, ""),
        )  # fmt: skip
        study = studies.get(experiment.id)
        if study is not None:
            trials = study.study.get_trials(deepcopy=False)
            state = optuna.trial.TrialState
            interrupted = [t for t in trials if t.user_attrs.get(INTERRUPTED)]
            spent = [r for r in records if r.experiment == experiment.id]
            complete = [t for t in trials if t.state == state.COMPLETE]
            entry.defaults = study.defaults
            entry.trials_run = study.counted()
            entry.pruned = sum(t.state == state.PRUNED for t in trials)
            entry.failed = sum(t.state == state.FAIL for t in trials) - len(interrupted)
            entry.interrupted = len(interrupted)
            entry.trial_epochs = sum(r.epochs_run or 0 for r in spent)
            entry.trial_seconds = sum((r.train_seconds or 0) + (r.eval_seconds or 0) for r in spent)
            entry.default_val_accuracy = next((t.value for t in complete if t.params == study.defaults), None)
            if (best := study.best()) is not None:
                entry.best_trial, entry.best_val_accuracy, entry.best = best
        entries.append(entry)
    return SearchSummary(experiments=entries)
