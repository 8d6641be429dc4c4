"""A run record: everything one (experiment, seed) measured, typed; dicts and JSON only on disk.

The runner and every failure path make the same `RunRecord`; results.csv's columns are the fields
marked `CSV`, in declaration order, with the reference values after them.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Status(str, Enum):
    """How a run ended. `ok` and `diverged` trained to the end and were measured; the others are
    cut short: an error, Ctrl-C, CUDA out of memory, a crash of the run's process (a segfault, or
    the operating system's out-of-memory killer), the run's time limit, or `--skip`. A search's
    trial may also be `pruned`: stopped early, by plan, for trailing the others."""

    ok = "ok"
    failed = "failed"
    diverged = "diverged"
    interrupted = "interrupted"
    oom = "oom"
    crashed = "crashed"
    timeout = "timeout"
    skipped = "skipped"
    pruned = "pruned"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def finished(self) -> bool:
        """Trained to the end (or to its pruning) and measured: what a resume keeps."""
        return self in (Status.ok, Status.diverged, Status.pruned)

    @property
    def measured(self) -> int:
        """How much a run with this status measured: a finished run (ok, or diverged with its
        curves) over one cut short; a combined report keeps the one that measured more."""
        return {Status.ok: 2, Status.diverged: 1, Status.pruned: 1}.get(self, 0)


CSV = "csv"  # marks a field that results.csv shows as a column


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassMetrics(Strict):
    class_: str  # "class" in JSON; a Python keyword here
    precision: float
    recall: float
    f1: float
    support: int

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=lambda n: "class" if n == "class_" else n, serialize_by_alias=True)


class EpochRow(Strict):
    epoch: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    train_seconds: float


class GradientGap(Strict):
    """Trainable parameters no gradient reached in the first epoch (first names only)."""

    count: int
    tensors: int
    names: list[str]


class SplitSizes(Strict):
    train: int
    val: int
    test: int


class RunRecord(Strict):
    """One (experiment, seed), or one trial of a search; a run that did not finish carries its
    identity, status and error. A trial is scored on validation and never holds test numbers."""

    experiment: Annotated[str, CSV]
    tuner: Annotated[str, CSV]
    seed: Annotated[int, CSV]
    trial: int | None = None  # a search's trial number; None for a run
    trial_values: dict[str, Any] = {}  # the values the trial was asked to try, by dimension
    status: Annotated[Status, CSV]
    error: Annotated[str, CSV] = ""
    trainable_params: Annotated[int | None, CSV] = None
    total_params: Annotated[int | None, CSV] = None
    trainable_percent: Annotated[float | None, CSV] = None
    trainable_without_gradient: GradientGap | None = None
    frozen_added_params: int | None = None
    train_accuracy: Annotated[float | None, CSV] = None
    val_accuracy: Annotated[float | None, CSV] = None
    val_loss: float | None = None
    test_accuracy: Annotated[float | None, CSV] = None
    test_loss: float | None = None
    test_macro_f1: Annotated[float | None, CSV] = None
    test_correct: Annotated[int | None, CSV] = None  # from the confusion matrix
    test_total: Annotated[int | None, CSV] = None
    epochs_run: Annotated[int | None, CSV] = None
    best_epoch: Annotated[int | None, CSV] = None
    epochs_to_converge: Annotated[int | None, CSV] = None
    seconds_to_converge: Annotated[float | None, CSV] = None
    stopped_early: bool | None = None
    setup_seconds: Annotated[float | None, CSV] = None
    train_seconds: Annotated[float | None, CSV] = None
    eval_seconds: Annotated[float | None, CSV] = None
    encode_seconds: float | None = None  # the feature encoding this run computed (in setup_seconds); 0: an earlier run's or the cache's; None: no cached features
    images_per_second: Annotated[float | None, CSV] = None
    peak_memory_mb: Annotated[float | None, CSV] = None
    memory_kind: Annotated[str | None, CSV] = None
    device: Annotated[str | None, CSV] = None
    precision: str | None = None
    batch_size: int | None = None
    accumulation_steps: int | None = None
    refit_epochs: int | None = None  # epochs of the refit on train + validation that was tested; None: tested as selected
    refit_seconds: float | None = None  # the refit's training; train_seconds stays the selection run's
    cached_features: Annotated[bool | None, CSV] = None
    features_from: str | None = None
    split_sizes: SplitSizes | None = None
    per_class: list[ClassMetrics] | None = None
    confusion_matrix: list[list[int]] | None = None
    # Per test image, in the test split's stored order (the same for every run of a suite): the
    # predicted class and the true one, so two strategies can be compared image by image
    # (reporting.significance). The labels are repeated in every record, not kept once per run
    # directory, so that a record stands alone (copied, combined); a few ints per image.
    test_predictions: list[int] | None = None
    test_labels: list[int] | None = None
    history: list[EpochRow] | None = None
    params: dict[str, Any] = {}
    reference: dict[str, Any] | None = None
    traceback: str = Field("", exclude=True, repr=False)  # a failure's, for errors.log; not in the record

    @model_validator(mode="after")
    def _derived_and_complete(self) -> RunRecord:
        if self.confusion_matrix and self.test_total is None:  # a record written before these fields
            self.test_correct = sum(row[i] for i, row in enumerate(self.confusion_matrix))
            self.test_total = sum(map(sum, self.confusion_matrix))
        required: tuple[str, ...] = ()
        if self.trial is not None:
            if tested := [name for name in TESTED if getattr(self, name) is not None]:
                raise ValueError(f"a search trial holds test numbers ({', '.join(tested)})")
            required = (*COUNTED, "val_accuracy") if self.status in (Status.ok, Status.pruned) else COUNTED
        elif self.status.finished:
            required = MEASURED if self.status == Status.ok else COUNTED  # a diverged run may have nothing finite to test
        if (self.test_predictions is None) != (self.test_labels is None) or len(self.test_predictions or ()) != len(self.test_labels or ()):
            raise ValueError("test_predictions and test_labels come together, one per test image")
        if self.status.finished and (missing := [name for name in required if getattr(self, name) is None]):
            raise ValueError(f"a finished {'trial' if self.trial is not None else 'run'} lacks {', '.join(missing)}")
        return self

    @property
    def key(self) -> str:
        return run_key(self.experiment, self.seed) if self.trial is None else trial_key(self.experiment, self.trial)

    def json_data(self) -> dict[str, Any]:
        """The record as JSON holds it (NaN as null)."""
        return self.model_dump(mode="json")

    def csv_row(self) -> dict[str, Any]:
        """The record's results.csv row, reference values as `ref_*` columns."""
        row: dict[str, Any] = {name: getattr(self, name) for name in RECORD_COLUMNS}
        row["status"] = self.status.value
        for name in REFERENCE_FIELDS:
            row[f"ref_{name}"] = (self.reference or {}).get(name)
        return row


COUNTED = ("trainable_params", "total_params", "history")
TESTED = ("test_accuracy", "test_loss", "test_macro_f1", "test_correct", "test_total", "per_class", "confusion_matrix", "test_predictions", "test_labels")
MEASURED = (*COUNTED, "test_accuracy", "val_accuracy", "test_macro_f1", "per_class", "confusion_matrix")
RECORD_COLUMNS = [name for name, field in RunRecord.model_fields.items() if CSV in field.metadata]
REFERENCE_FIELDS = ("test_accuracy", "trainable_params", "epochs_to_converge")  # registry's Reference
COLUMNS = [*RECORD_COLUMNS, *(f"ref_{name}" for name in REFERENCE_FIELDS)]  # results.csv, in order


def run_key(experiment_id: str, seed: int) -> str:
    return f"{experiment_id}-seed{seed}"


def trial_key(experiment_id: str, trial: int) -> str:
    return f"{experiment_id}-trial{trial}"


def split_run_key(key: str) -> tuple[str, int]:
    """The (experiment, seed) that `run_key` made `key` of."""
    experiment, seed = key.rsplit("-seed", 1)
    return experiment, int(seed)


def in_plan_order(records: list[RunRecord], plan: list[str]) -> list[RunRecord]:
    """Records ordered as the plan lists their (experiment, seed); any the plan lacks come last."""
    order = {key: i for i, key in enumerate(plan)}
    return sorted(records, key=lambda r: order.get(r.key, len(order)))


def missing_keys(plan: list[str], records: list[RunRecord]) -> list[str]:
    """The planned (experiment, seed) runs that have no record."""
    recorded = {r.key for r in records}
    return [key for key in plan if key not in recorded]
