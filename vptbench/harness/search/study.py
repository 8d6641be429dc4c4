"""One Optuna study per searched experiment, kept in the run directory's journal file, asked and told
on the driver only. Each trial's values are drawn by a sampler seeded by its slot in the budget,
so that a search stopped and resumed asks what an uninterrupted one would have asked."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vptbench.errors import UsageError, first_line
from vptbench.harness.search.trial import Pruning, TrialSpec
from vptbench.registry.schema import Range
from vptbench.registry.search import ResolvedSearch
from vptbench.results.records import RunRecord, Status
from vptbench.results.search import STUDY_FILE, search_dir

if TYPE_CHECKING:
    import optuna

INTERRUPTED = "interrupted"  # a failed trial's user attribute: stopped, not failed; its slot is asked again


def open_storage(run_dir: Path, fresh: str) -> optuna.storages.BaseStorage:
    """The run's study journal; a damaged one is named with the command `fresh` that starts afresh."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = search_dir(run_dir) / STUDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        storage.get_all_studies()
    except Exception as exc:  # noqa: BLE001 - a damaged journal fails in many ways
        raise UsageError(f"'{path}': the search's study journal is damaged ({first_line(exc)}); start afresh with `{fresh}`") from exc
    return storage


@dataclass
class Study:
    """An experiment's study, with what asking and telling its trials needs."""

    experiment: str
    search: ResolvedSearch
    defaults: dict[str, Any]
    study: optuna.Study
    epochs: int

    @classmethod
    def open(cls, storage, experiment: str, search: ResolvedSearch, defaults: dict[str, Any], epochs: int) -> Study:
        """The experiment's study, created or continued; trials a stop left running are failed as
        interrupted (not counted). The untuned defaults are kept in the study, since a resumed plan
        is the tuned one."""
        import optuna

        study = optuna.create_study(storage=storage, study_name=experiment, direction="maximize", load_if_exists=True)
        if "defaults" not in study.user_attrs:
            study.set_user_attr("defaults", defaults)
        for left in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)):
            number = study.ask().number if left.state == optuna.trial.TrialState.WAITING else left.number  # enqueued, never asked
            study._storage.set_trial_user_attr(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number), INTERRUPTED, True)
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        return cls(experiment, search, study.user_attrs["defaults"], study, epochs)

    def counted(self) -> int:
        """Trials that count against the budget: finished, pruned or failed, not interrupted."""
        return len(self.finished())

    def remaining(self) -> int:
        return max(0, self.search.trials - self.counted())

    def ask(self, slot: int) -> TrialSpec:
        """The trial for budget slot `slot`: the defaults first (when they lie in the space), a grid's
        next point, or the sampler's choice with a seed of its own. Trials are asked in blocks of
        `parallel` slots, each seeing the blocks before it and none of its own: the values drawn and
        the pruning snapshot are the same whether a block ran at once, one by one, or was cut by a
        stop and resumed."""
        import optuna

        search = self.search
        start = slot - slot % search.parallel
        history = self.finished()[:start]  # slot order: an interrupted trial is no slot
        seen = [*history, *(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL) for _ in range(slot - start))]
        if search.sampler == "grid":
            points = search.grid()
            random.Random(search.seed).shuffle(points)
            values = points[slot % len(points)]
        elif slot == 0 and _within(self.defaults, search):
            values = dict(self.defaults)
        else:
            seed = zlib.crc32(f"{search.seed}/{self.experiment}/{slot}".encode())
            sampler = optuna.samplers.TPESampler(n_startup_trials=startup_trials(search.trials), seed=seed) if search.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
            snapshot = optuna.create_study(study_name=self.experiment, direction="maximize", sampler=sampler)
            snapshot.add_trials(seen)
            drawn = snapshot.ask()
            values = {name: _suggest(drawn, name, dimension) for name, dimension in search.dimensions().items()}
        self.study.enqueue_trial(values, skip_if_exists=False)
        trial = self.study.ask()
        assert {name: _suggest(trial, name, dimension) for name, dimension in search.dimensions().items()} == values
        pruning = None if search.pruner == "none" else Pruning(search.pruner, self.experiment, seen, self.epochs)
        return TrialSpec(trial.number, values, pruning)

    def finished(self) -> list[optuna.trial.FrozenTrial]:
        """The counted trials, in the order they were asked."""
        return [t for t in self.study.get_trials(deepcopy=True) if t.state.is_finished() and not t.user_attrs.get(INTERRUPTED)]

    def tell(self, record: RunRecord) -> None:
        """A trial's outcome: its validation curve as intermediate values, then its state."""
        import optuna

        state = optuna.trial.TrialState
        assert record.trial is not None, "only a trial's record is told"
        storage, number = self.study._storage, record.trial
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        for row in record.history or []:
            if row.val_accuracy is not None:
                storage.set_trial_intermediate_value(trial_id, row.epoch, row.val_accuracy)
        if record.status == Status.interrupted:
            storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            self.study.tell(number, state=state.FAIL)
        elif record.status == Status.ok and record.val_accuracy is not None:
            self.study.tell(number, record.val_accuracy)
        elif record.status == Status.pruned:
            self.study.tell(number, state=state.PRUNED)
        else:
            self.study.tell(number, state=state.FAIL)

    def best(self) -> tuple[int, float, dict[str, Any]] | None:
        """The best finished trial (the first of equals): its number, validation accuracy and values."""
        import optuna

        complete = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            return None
        best = max(complete, key=lambda t: (t.value, -t.number))
        return best.number, float(best.value or 0.0), dict(best.params)


def startup_trials(budget: int) -> int:
    """Random trials before TPE models the others: half the budget, at most Optuna's 10. Optuna's
    default of 10 would leave a budget of 10 or fewer (the demo's 8) all random, in TPE's name."""
    return min(10, max(1, budget // 2))


def _within(values: dict[str, Any], search: ResolvedSearch) -> bool:
    """Whether every default lies in its dimension, so that the untuned settings can be a trial."""
    for name, dimension in search.dimensions().items():
        value = values.get(name)
        if isinstance(dimension, Range):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not dimension.low <= value <= dimension.high:
                return False
            if dimension.integer and value != int(value):
                return False
        elif value not in dimension:
            return False
    return True


def _suggest(trial: optuna.Trial, name: str, dimension) -> Any:
    if isinstance(dimension, Range):
        if dimension.integer:
            return trial.suggest_int(name, int(dimension.low), int(dimension.high), log=dimension.log)
        return trial.suggest_float(name, float(dimension.low), float(dimension.high), log=dimension.log)
    return trial.suggest_categorical(name, list(dimension))
