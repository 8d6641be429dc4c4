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

    @model_serializer(mode="wrap")
    def _search_only_when_searched(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A run without a search has no `search` key: its report.json is as before searches existed."""
        data = handler(self)
        if self.search is None:
            data.pop("search", None)
        return data
