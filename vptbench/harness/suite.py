"""Run a suite's experiments x seeds; a failing run becomes a row, never the end of the suite."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

from vptbench import plugins
from vptbench.data import load_images
from vptbench.errors import ConfigError, PluginError, UsageError, VptbenchError, unknown_name
from vptbench.harness.device import describe, resolve_device
from vptbench.harness.runner import Observer, PlannedExperiment, Workbench, run_one
from vptbench.models import load_model
from vptbench.protocol import Task
from vptbench.registry import Registry, Suite
from vptbench.registry.load import validate
from vptbench.reporting import write_reports
from vptbench.results import (
    RUN_FILE,
    SCHEMA_VERSION,
    environment,
    new_run_dir,
    now,
    run_key,
    save_run_record,
    write_json,
)

FAILED_STATUSES = ("failed", "diverged", "interrupted")


@dataclass
class SuiteResult:
    run_dir: Path
    records: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(r["status"] in FAILED_STATUSES for r in self.records)


def select_suite(registry: Registry, name: str | None, model: str | None = None) -> tuple[str, Suite]:
    """The named (or default) suite; `model` swaps in another declared model for this run."""
    name = name or registry.default_suite
    if name not in registry.suites:
        raise UsageError(unknown_name("suite", name, registry.suites))
    suite = registry.suites[name]
    if model is not None:
        if model not in registry.models:
            raise UsageError("--model: " + unknown_name("model", model, registry.models))
        suite = suite.model_copy(update={"model": model})
        registry.suites[name] = suite
    return name, suite


def plan_experiments(
    suite_name: str, suite: Suite, config_path: Path, ids: list[str], epochs: int | None = None
) -> list[PlannedExperiment]:
    """Resolve each experiment's tuner and validate its params before anything runs."""
    for experiment_id in ids:
        if experiment_id not in suite.experiments:
            raise UsageError(unknown_name(f"experiment in suite '{suite_name}'", experiment_id, suite.experiments))
    available = plugins.find_plugins()
    plans = []
    for experiment_id in ids:
        spec = suite.experiments[experiment_id]
        where = f"suites.{suite_name}.experiments.{experiment_id}"
        if spec.tuner not in available:
            raise ConfigError(f"{config_path}: {where}.tuner: " + unknown_name("tuner", spec.tuner, available))
        training = suite.training_for(experiment_id)
        if epochs is not None:
            training = training.model_copy(update={"epochs": epochs})
        try:
            tuner = plugins.load_tuner(spec.tuner)
        except PluginError as exc:  # a broken plugin fails its own experiments, not the suite
            plans.append(PlannedExperiment(experiment_id, spec, training, None, None, str(exc)))
            continue
        config = validate(tuner.Config, spec.params, config_path, prefix=f"{where}.params")
        plans.append(PlannedExperiment(experiment_id, spec, training, tuner, config))
    return plans


def run_suite(
    registry: Registry,
    config_path: Path,
    suite_name: str,
    plans: list[PlannedExperiment],
    seeds: list[int],
    device_name: str,
    output: Path,
    observer: Observer,
) -> SuiteResult:
    suite = registry.suites[suite_name]
    device = resolve_device(device_name)
    model = load_model(suite.model, registry.models[suite.model])
    dataset = registry.datasets[suite.dataset]
    data = load_images(suite.dataset, dataset, model, observer.progress)
    task = Task(list(dataset.class_names), list(dataset.templates), model.tokenizer)
    bench = Workbench(model, data, task, device)

    result = SuiteResult(new_run_dir(output, suite_name))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "suite": suite_name,
        "config_path": str(config_path),
        "config": {
            "suite": suite.model_dump(mode="json"),
            "model": registry.models[suite.model].model_dump(mode="json"),
            "dataset": dataset.model_dump(mode="json"),
            "experiments": {p.id: {"tuner": p.spec.tuner, "params": _params(p), "training": p.training.model_dump(mode="json")} for p in plans},
        },
        "seeds": seeds,
        "plan": [run_key(p.id, s) for p in plans for s in seeds],
        "device": describe(device),
        "environment": environment(),
        "started": now(),
        "status": "running",
    }
    write_json(result.run_dir / RUN_FILE, meta)
    status = "finished"
    try:
        for plan in plans:
            for seed in seeds:
                record = _run_guarded(bench, plan, seed, observer, result.run_dir)
                result.records.append(record)
                save_run_record(result.run_dir, record)
                write_reports(result.run_dir, meta, result.records)
                observer.run_done(record)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        meta.update(status=status, finished=now())
        write_json(result.run_dir / RUN_FILE, meta)
        write_reports(result.run_dir, meta, result.records)
    return result


def _params(plan: PlannedExperiment) -> dict:
    return plan.config.model_dump(mode="json") if plan.config is not None else dict(plan.spec.params)


def _run_guarded(bench: Workbench, plan: PlannedExperiment, seed: int, observer: Observer, run_dir: Path) -> dict:
    """One run; any exception becomes a `failed` row with its one-line message, traceback to the log."""
    if plan.tuner is None:
        return _failed(plan, seed, plan.error)
    try:
        record = run_one(bench, plan, seed, observer)
    except VptbenchError as exc:
        return _failed(plan, seed, str(exc))
    except Exception as exc:  # noqa: BLE001 - a tuner's bug must not end the suite
        with open(run_dir / "errors.log", "a", encoding="utf-8") as log:
            log.write(f"== {run_key(plan.id, seed)}\n{traceback.format_exc()}\n")
        return _failed(plan, seed, f"{type(exc).__name__}: {exc} (traceback in errors.log)")
    record["params"] = _params(plan)
    record["reference"] = plan.spec.reference.model_dump() if plan.spec.reference else None
    return record


def _failed(plan: PlannedExperiment, seed: int, error: str) -> dict:
    first_line = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return {
        "experiment": plan.id,
        "tuner": plan.spec.tuner,
        "seed": seed,
        "status": "failed",
        "error": first_line,
        "params": _params(plan),
        "reference": plan.spec.reference.model_dump() if plan.spec.reference else None,
    }


def dry_run(registry: Registry, suite_name: str, plans: list[PlannedExperiment]) -> list[dict]:
    """Build every experiment's model and count its parameters; no data, no training."""
    import copy

    from vptbench.harness.runner import count_parameters

    suite = registry.suites[suite_name]
    model = load_model(suite.model, registry.models[suite.model])
    dataset = registry.datasets[suite.dataset]
    task = Task(list(dataset.class_names), list(dataset.templates), model.tokenizer)
    rows = []
    for plan in plans:
        row = {"experiment": plan.id, "tuner": plan.spec.tuner, "status": "ok", "error": ""}
        if plan.tuner is None:
            rows.append({**row, "status": "failed", "error": plan.error})
            continue
        tuner = plan.tuner(plan.config, copy.deepcopy(model.clip).requires_grad_(False), task)
        trainable, total = count_parameters(tuner)
        reference = plan.spec.reference.trainable_params if plan.spec.reference else None
        rows.append({**row, "trainable_params": trainable, "total_params": total, "ref_trainable_params": reference})
    return rows
