"""What a trial carries to wherever it runs: its number, the values it tries, and what its pruner
needs to decide alone, on the worker, whether it trails the trials finished before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vptbench.harness.trainer import EpochRecord

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


@dataclass
class Pruning:
    """A pruner and a frozen copy of the study as the trial was asked: a decision made on the
    worker is the one the driver would make, whichever executor runs the trial."""

    pruner: str  # median | hyperband
    study_name: str
    earlier: list[FrozenTrial]  # every trial before this one; those still running as failed placeholders
    epochs: int

    def stopper(self) -> Callable[[EpochRecord], bool]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=self.study_name, direction="maximize", pruner=make_pruner(self.pruner, self.epochs))
        study.add_trials(self.earlier)
        trial = study.ask()

        def should_stop(record: EpochRecord) -> bool:
            if record.val_accuracy is None:
                return False
            trial.report(record.val_accuracy, record.epoch)
            return trial.should_prune()

        return should_stop


def make_pruner(name: str, epochs: int):
    """Optuna's pruner of that name, over epochs: the median rule starts after two finished trials
    and a tenth of the epochs (on demo-tuned's curves a fifth saved 39 % of trial epochs, a tenth 44 %,
    both with the same best trials: benchmarks/RESULTS.md); Hyperband's brackets span one epoch to all."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 10))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class TrialSpec:
    number: int
    values: dict[str, Any] = field(default_factory=dict)  # by dimension: `lr`, `params.num_tokens`
    pruning: Pruning | None = None
