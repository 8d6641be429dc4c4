"""What the harness reports while it works; the CLI draws progress from it."""

from __future__ import annotations

from typing import Any, Protocol

from vptbench.harness.trainer import EpochRecord
from vptbench.results.records import RunRecord


class Observer(Protocol):
    progress: Any

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None: ...

    def epoch_done(self, record: EpochRecord) -> None: ...

    def run_done(self, record: RunRecord) -> None: ...

    def expect(self, runs: int) -> None:
        """`runs` more to come than planned: a search's trials."""
        ...


class QuietObserver:
    progress = None

    def __enter__(self) -> QuietObserver:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None:
        pass

    def epoch_done(self, record: EpochRecord) -> None:
        pass

    def run_done(self, record: RunRecord) -> None:
        pass

    def expect(self, runs: int) -> None:
        pass
