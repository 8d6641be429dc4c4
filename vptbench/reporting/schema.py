"""The schema of `report.json`: the run's manifest with its records, what downstream tools may rely
on (results.manifest.SCHEMA_VERSION numbers it)."""

from __future__ import annotations

from typing import Any

from pydantic import SerializerFunctionWrapHandler, model_serializer

from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord


class Report(RunManifest):
    runs: list[RunRecord]
    search: dict[str, Any] | None = None  # a searched run's: {"summary": SearchSummary, "trials": [trial records]}
    # with two or more strategies comparable on the same test images (reporting.significance):
    # {"alpha", "confidence_level", "resamples", "random_seed", "pairs": [significance.csv's rows], "not_compared": {experiment: why}}
    significance: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _search_only_when_searched(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A run without a search has no `search` key, and one without two comparable strategies no
        `significance` key: its report.json is as before these existed."""
        data = handler(self)
        for key in ("search", "significance"):
            if getattr(self, key) is None:
                data.pop(key, None)
        return data
