"""The schema of `report.json`: what downstream tools may rely on (bump SCHEMA_VERSION on change)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

Status = Literal["ok", "failed", "diverged", "interrupted", "oom"]
FINISHED_STATUSES = ("ok", "diverged")  # trained to the end and measured: what a resume keeps


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ClassMetrics(BaseModel):
    class_: str  # "class" in JSON; a Python keyword here
    precision: float
    recall: float
    f1: float
    support: int

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=lambda n: "class" if n == "class_" else n)


class EpochRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    train_seconds: float


class RunRecord(Open):
    """One (experiment, seed); a failed run carries only the identifying fields and its error."""

    experiment: str
    tuner: str
    seed: int
    status: Status
    error: str = ""
    params: dict[str, Any] = {}
    reference: dict[str, Any] | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    test_macro_f1: float | None = None
    epochs_to_converge: int | None = None
    per_class: list[ClassMetrics] | None = None
    confusion_matrix: list[list[int]] | None = None
    history: list[EpochRow] | None = None

    @model_validator(mode="after")
    def _finished_runs_are_measured(self) -> RunRecord:
        if self.status in FINISHED_STATUSES:
            missing = [name for name in MEASURED if getattr(self, name) is None]
            if missing:
                raise ValueError(f"a finished run lacks {', '.join(missing)}")
        return self


MEASURED = ("trainable_params", "total_params", "test_accuracy", "val_accuracy", "test_macro_f1", "per_class", "confusion_matrix", "history")


class Report(Open):
    schema_version: Literal[1]
    suite: str
    config: dict[str, Any]
    seeds: list[int]
    plan: list[str]  # every (experiment, seed) the run set out to do, as "E2-seed0"
    device: str
    environment: dict[str, Any]
    status: str
    runs: list[RunRecord]
