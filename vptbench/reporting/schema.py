"""The schema of `report.json`: the run's manifest with its records, what downstream tools may rely
on (results.manifest.SCHEMA_VERSION numbers it)."""

from __future__ import annotations

from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord


class Report(RunManifest):
    runs: list[RunRecord]
