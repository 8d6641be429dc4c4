"""`run.json`, typed: what a run set out to do, with what, where and when."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1  # of run.json, the run records and report.json alike

RunStatus = Literal["running", "finished", "interrupted", "combined"]


class ExperimentEntry(BaseModel):
    """An experiment as it ran: its tuner, validated params and resolved training settings."""

    model_config = ConfigDict(extra="forbid")

    tuner: str
    description: str = ""
    params: dict[str, Any] = {}
    training: dict[str, Any] = {}  # Training's fields, seeds included
    reference: dict[str, Any] | None = None
    search: dict[str, Any] | None = None  # the resolved search it was tuned by, if any


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str
    model: dict[str, Any] = {}
    dataset_name: str
    dataset: dict[str, Any] = {}
    experiments: dict[str, ExperimentEntry] = {}


class Damage(BaseModel):
    """A record left out: unreadable, failing the schema, or lying where it does not belong."""

    path: str
    problem: str


class Overlap(BaseModel):
    """A run found in several combined directories, and the one reported."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    run: str
    reported: str
    in_: list[str] = Field(alias="in")


class RunManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    suite: str
    config_path: str | None = None
    config: RunConfig
    seeds: list[int]
    plan: list[str]  # every (experiment, seed) the run set out to do, as "E2-seed0"
    fingerprints: dict[str, Any] = {}
    device: str = "?"
    environment: dict[str, Any] = {}
    started: str | None = None
    resumed: list[str] = []
    resumed_runs: list[str] = []
    status: RunStatus
    finished: str | None = None
    sources: list[str] = []  # a copied or combined report's run directories
    overlapping_runs: list[Overlap] = []
    damaged_records: list[Damage] = []

    def json_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
