"""Checks made before anything heavy loads: a run that cannot start fails in a second, and leaves
nothing behind. The folders need no plan, so they are checked before the strategies are imported."""

from __future__ import annotations

from pathlib import Path

from vptbench.errors import PluginError, UsageError
from vptbench.harness.planning import SuitePlan
from vptbench.results.io import folder_problem
from vptbench.results.lock import RunLock


def check_folders(output: Path | None, feature_cache: Path | None, resume: Path | None) -> None:
    """The folders that receive results can be written, and a resumed run directory is not in use
    by a live run."""
    for what, folder in (("--output: cannot write results to", output), ("--feature-cache: cannot write to", feature_cache)):
        if folder is not None and (problem := folder_problem(folder)):
            raise UsageError(f"{what} '{folder}': {problem}")
    if resume:
        RunLock(resume).check_free()


def check_runnable(plan: SuitePlan) -> None:
    """Some selected experiment has a tuner that loaded: else nothing could run."""
    unusable = [p for p in plan.experiments if p.error]
    if unusable and len(unusable) == len(plan.experiments):
        more = f" (+{len(unusable) - 1} more)" if len(unusable) > 1 else ""
        raise PluginError(f"no selected experiment can run; {unusable[0].id}: {unusable[0].error}{more}")
