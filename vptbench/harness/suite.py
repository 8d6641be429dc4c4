"""Run a suite's experiments x seeds; a failing run becomes a record, never the end of the suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vptbench.errors import UsageError, stop_reason
from vptbench.harness.device import describe
from vptbench.harness.executors import Executor, InlineExecutor
from vptbench.harness.guarded import failed_record
from vptbench.harness.observer import Observer
from vptbench.harness.planning import SuitePlan
from vptbench.harness.workbench import Workbench
from vptbench.results.combine import fingerprint_difference
from vptbench.results.lock import RunLock
from vptbench.results.manifest import RunManifest
from vptbench.results.provenance import environment, now
from vptbench.results.records import RunRecord, Status, in_plan_order, run_key
from vptbench.results.rundir import RUN_FILE, load_manifest


class RecordSink(Protocol):
    """Where finished records go: kept one by one as they come, reported in full at the end."""

    def start(self, manifest: RunManifest, kept: list[RunRecord]) -> None: ...

    def add(self, record: RunRecord) -> None: ...

    def finish(self, manifest: RunManifest, records: list[RunRecord]) -> None: ...


@dataclass
class SuiteResult:
    run_dir: Path
    records: list[RunRecord] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(r.status != Status.ok for r in self.records)


def run_suite(
    plan: SuitePlan, bench: Workbench, run_dir: Path, observer: Observer, sink: RecordSink, finished: list[RunRecord] | None = None,
    retry_oom: bool = False, executor: Executor | None = None, skip: frozenset[str] = frozenset(),
) -> SuiteResult:  # fmt: skip
    """Run every (experiment, seed) not already finished in `finished`, handing each record to
    `sink` as it completes; the sink reports in full once, at the end or on a stop. The runs of
    the experiments in `skip` are recorded as skipped instead (a strategy that hangs or crashes every
    time need not hold a resume hostage); a later resume without it runs them. Experiments with a
    search are tuned on validation first (continuing the run directory's study on a resume), and
    their final runs use the values found."""
    earlier_records = {r.key: r for r in finished or []}
    done = {key: r for key, r in earlier_records.items() if r.status.finished}
    plan_keys = plan.keys()
    earlier = load_manifest(run_dir) if (run_dir / RUN_FILE).is_file() else None  # resuming: keep when it first started
    manifest = RunManifest(
        suite=plan.suite,
        config_path=str(Path(plan.config_path).absolute()),  # a resume from another folder still finds it
        config=plan.describe(),
        seeds=plan.seeds,
        plan=plan_keys,
        fingerprints=bench.fingerprints,
        device=describe(bench.device),
        environment=environment(),
        started=earlier.started if earlier else now(),
        resumed=[*earlier.resumed, now()] if earlier else [],
        resumed_runs=sorted(done),
        status="running",
    )
    if earlier and (changed := fingerprint_difference(earlier, manifest)):
        raise UsageError(f"cannot resume '{run_dir}': {changed} changed since it started; start a new run")
    result = SuiteResult(run_dir, in_plan_order(list(earlier_records.values()), plan_keys))  # a failed one stays until its rerun ends
    executor = executor or InlineExecutor()

    def keep(record: RunRecord) -> None:
        sink.add(record)
        result.records = in_plan_order([*(r for r in result.records if r.key != record.key), record], plan_keys)

    with RunLock(run_dir):
        sink.start(manifest, in_plan_order(list(done.values()), plan_keys))
        status = "interrupted"
        try:
            if any(e.search for e in plan.experiments):
                from vptbench.harness.search.engine import run_search

                plan = run_search(plan, bench, run_dir, observer, executor, retry_oom, skip, f"vptbench run --all --suite {plan.suite}")
                manifest = manifest.model_copy(update={"config": plan.describe()})  # the final runs' settings: the tuned ones
            pending = [(e, seed) for e in plan.experiments for seed in plan.seeds if run_key(e.id, seed) not in done]
            for experiment, seed in pending:
                if experiment.id in skip:
                    keep(failed_record(experiment, seed, "skipped with --skip", Status.skipped))
            runs = executor.run(bench, [(e, seed) for e, seed in pending if e.id not in skip], observer, retry_oom)
            try:
                for record in runs:
                    keep(record)
                    observer.run_done(record)
                status = "finished"
            except KeyboardInterrupt:
                in_flight = executor.in_flight()
                runs.close()  # the executor stops what it still runs, wherever the interrupt landed
                for experiment, seed in in_flight:  # recorded too, then the interrupt goes on
                    keep(failed_record(experiment, seed, stop_reason(), Status.interrupted))
                raise
        finally:
            executor.close()
            sink.finish(manifest.model_copy(update={"status": status, "finished": now()}), result.records)
    return result
