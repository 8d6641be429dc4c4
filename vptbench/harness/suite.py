"""Run a suite's experiments x seeds; a failing run becomes a row, never the end of the suite."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from vptbench import plugins
from vptbench.clip.features import class_prompts
from vptbench.data import load_images, make_splits
from vptbench.errors import (
    ConfigError,
    DataError,
    PluginError,
    UsageError,
    first_few,
    first_line,
    stop_reason,
    unknown_name,
)
from vptbench.harness.device import describe, use_device
from vptbench.harness.executors import Executor, LocalExecutor
from vptbench.harness.features import FeatureStore
from vptbench.harness.fingerprints import suite_fingerprints
from vptbench.harness.guarded import failed_record, params_of, reference_of
from vptbench.harness.runner import Observer, PlannedExperiment, Workbench, count_parameters
from vptbench.models import LoadedModel, load_model
from vptbench.protocol import Task
from vptbench.registry import DatasetSpec, Experiment, ModelSpec, Registry, Suite, Training
from vptbench.registry.load import paths_from
from vptbench.registry.params import validate_params
from vptbench.reporting import write_reports
from vptbench.reporting.schema import FINISHED_STATUSES
from vptbench.results import (
    ERRORS_LOG,
    RUN_FILE,
    SCHEMA_VERSION,
    RunLock,
    environment,
    fingerprint_difference,
    in_plan_order,
    now,
    run_key,
    save_run_record,
    write_atomic,
    write_json,
)


@dataclass
class SuiteResult:
    run_dir: Path
    records: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(r["status"] != "ok" for r in self.records)


def select_suite(registry: Registry, name: str | None, model: str | None = None, dataset: str | None = None) -> tuple[str, Suite]:
    """The named (or default) suite; `model` and `dataset` swap in other declared ones for this run."""
    name = name or registry.default_suite
    if name not in registry.suites:
        raise UsageError(unknown_name("suite", name, registry.suites))
    suite = registry.suites[name]
    for option, value, declared in (("model", model, registry.models), ("dataset", dataset, registry.datasets)):
        if value is None:
            continue
        if value not in declared:
            raise UsageError(f"--{option}: " + unknown_name(option, value, declared))
        suite = suite.model_copy(update={option: value})
    registry.suites[name] = suite
    return name, suite


def plan_experiments(
    suite_name: str, suite: Suite, config_path: Path, ids: list[str], overrides: dict[str, Any] | None = None
) -> list[PlannedExperiment]:
    """Resolve each experiment's tuner and validate its params before anything runs; `overrides`
    (the command line's --epochs, --compile) replace those training settings of every experiment."""
    ids = list(dict.fromkeys(ids))
    for experiment_id in ids:
        if experiment_id not in suite.experiments:
            raise UsageError(f"suite '{suite_name}': " + unknown_name("experiment", experiment_id, suite.experiments))
    available = plugins.find_plugins()
    plans, invalid = [], []
    for experiment_id in ids:
        spec = suite.experiments[experiment_id]
        where = f"suites.{suite_name}.experiments.{experiment_id}"
        if spec.tuner not in available:
            invalid.append(f"{config_path}: {where}.tuner: " + unknown_name("tuner", spec.tuner, available))
            continue
        training = suite.training_for(experiment_id).model_copy(update=overrides or {})
        try:
            tuner = plugins.load_tuner(spec.tuner)
        except PluginError as exc:  # a broken plugin fails its own experiments, not the suite
            plans.append(PlannedExperiment(experiment_id, spec, training, None, None, str(exc), exc.traceback))
            continue
        try:
            config = validate_params(tuner.Config, spec.params, config_path, prefix=f"{where}.params")
        except ConfigError as exc:
            invalid.append(str(exc))
            continue
        plans.append(PlannedExperiment(experiment_id, spec, training, tuner, config))
    if invalid:
        raise invalid_experiments(config_path, invalid)
    return plans


def invalid_experiments(config_path: Path, errors: list[str]) -> ConfigError:
    """One error counting every invalid experiment (naming the first few), so that fixing one does
    not just reveal the next; `vptbench list` shows each."""
    if len(errors) == 1:
        return ConfigError(errors[0])
    prefix = f"{config_path}: "
    return ConfigError(f"{prefix}{len(errors)} experiments are invalid: " + first_few([e.removeprefix(prefix) for e in errors], sep="; "))


def check_experiments(suite_name: str, suite: Suite, config_path: Path) -> list[dict]:
    """Each experiment as `vptbench list` shows it: ok, invalid (its config error) or broken (its plugin's)."""
    rows = []
    for experiment_id, spec in suite.experiments.items():
        try:
            (planned,) = plan_experiments(suite_name, suite, config_path, [experiment_id])
            status, error = ("broken", planned.error) if planned.error else ("ok", "")
        except ConfigError as exc:
            status, error = "invalid", str(exc)
        rows.append({"id": experiment_id, "tuner": spec.tuner, "params": spec.params, "description": spec.description, "status": status, "error": error})
    return rows


@dataclass
class SuitePlan:
    """Everything a suite run needs, resolved: from the registry, or from a run directory to resume."""

    suite: str
    model_name: str
    model: ModelSpec
    dataset_name: str
    dataset: DatasetSpec
    experiments: list[PlannedExperiment]
    seeds: list[int]
    config_path: str

    def keys(self) -> list[str]:
        return [run_key(p.id, s) for p in self.experiments for s in self.seeds]

    def describe(self) -> dict:
        """The resolved configuration as run.json records it (and `plan_from_run_dir` reads it back)."""
        return {
            "model_name": self.model_name,
            "model": self.model.model_dump(mode="json"),
            "dataset_name": self.dataset_name,
            "dataset": self.dataset.model_dump(mode="json"),
            "experiments": {
                p.id: {
                    "tuner": p.spec.tuner,
                    "description": p.spec.description,
                    "params": params_of(p),
                    "training": {**p.training.model_dump(mode="json"), "seeds": self.seeds},  # --seeds included
                    "reference": reference_of(p),
                }
                for p in self.experiments
            },
        }


def suite_plan(registry: Registry, config_path: Path, suite_name: str, experiments: list[PlannedExperiment], seeds: list[int]) -> SuitePlan:
    suite = registry.suites[suite_name]
    return SuitePlan(
        suite_name, suite.model, registry.models[suite.model], suite.dataset, registry.datasets[suite.dataset],
        experiments, seeds, str(config_path),
    )  # fmt: skip


def plan_from_run_dir(meta: dict) -> SuitePlan:
    """Rebuild a run's plan from its own run.json, so a resume ignores later edits to the TOML."""
    try:
        return _plan_from_meta(meta)
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise UsageError(f"cannot resume: run.json does not describe a runnable plan ({type(exc).__name__}: {first_line(exc)})") from None


def _plan_from_meta(meta: dict) -> SuitePlan:
    config = meta["config"]
    experiments = []
    for experiment_id, entry in config["experiments"].items():
        spec = Experiment(tuner=entry["tuner"], description=entry.get("description", ""), params=entry["params"], reference=entry.get("reference"))
        training = Training.model_validate(entry["training"])
        try:
            tuner = plugins.load_tuner(spec.tuner)
        except PluginError as exc:
            experiments.append(PlannedExperiment(experiment_id, spec, training, None, None, str(exc), exc.traceback))
            continue
        experiments.append(PlannedExperiment(experiment_id, spec, training, tuner, tuner.Config.model_validate(entry["params"])))
    folder = Path(meta["config_path"]).parent  # a run recorded before paths were made absolute
    return SuitePlan(
        meta["suite"], config["model_name"], paths_from(folder, ModelSpec.model_validate(config["model"])),
        config["dataset_name"], paths_from(folder, DatasetSpec.model_validate(config["dataset"])), experiments, list(meta["seeds"]),
        meta["config_path"],
    )  # fmt: skip


def task_for(dataset: DatasetSpec, model: LoadedModel) -> Task:
    return Task(list(dataset.class_names), list(dataset.templates), model.tokenizer)


def prepare(plan: SuitePlan, device_name: str, progress=None, feature_cache: Path | None = None, data_on_device: bool = True) -> Workbench:
    """Load the model once and decode the dataset once, for every run of the suite; the data goes
    to the device unless the runs happen elsewhere (Ray workers move it to their own)."""
    device = use_device(device_name)
    model = load_model(plan.model_name, plan.model)
    try:  # before minutes of decoding: every class prompt must fit the text tower
        class_prompts(model.tokenizer, plan.dataset.class_names, plan.dataset.templates)
    except DataError as exc:
        raise DataError(f"datasets.{plan.dataset_name}: {exc}") from None
    task = task_for(plan.dataset, model)
    trains = functools.cache(lambda: any(_trains(e, model, task) for e in plan.experiments))  # asked only when it matters
    data = load_images(plan.dataset_name, plan.dataset, model, progress, trains)
    if plan.experiments:  # a split that cannot be made fails now, not once per run
        try:
            make_splits(data, plan.experiments[0].training.val_fraction, plan.seeds[0], plan.dataset.class_names)
        except DataError as exc:
            if trains():
                raise DataError(f"datasets.{plan.dataset_name}: {exc}") from None
    try:
        on_device = data.to(device if data_on_device else torch.device("cpu"))
    except torch.cuda.OutOfMemoryError:
        size = sum(s.pixels.nbytes for s in (data.train, data.test, data.validation) if s is not None) / 2**30
        raise DataError(f"datasets.{plan.dataset_name}: the decoded images ({size:.1f} GiB as uint8) do not fit in {describe(device)} memory") from None
    return Workbench(model, on_device, task, device, FeatureStore(feature_cache), suite_fingerprints(model, data))


def _trains(experiment: PlannedExperiment, model: LoadedModel, task: Task) -> bool:
    """Whether the experiment's tuner has parameters to train; one that cannot be built fails its
    own run with its own error."""
    if experiment.tuner is None:
        return False
    try:
        tuner, _ = experiment.build(model.clip, task)
    except Exception:  # noqa: BLE001 - reported when the run builds it
        return False
    return count_parameters(tuner)[0] > 0


def run_suite(
    plan: SuitePlan, bench: Workbench, run_dir: Path, observer: Observer, finished: list[dict] | None = None,
    retry_oom: bool = False, executor: Executor | None = None,
) -> SuiteResult:  # fmt: skip
    """Run every (experiment, seed) not already in `finished`, saving each record as it completes."""
    import vptbench.reporting.plots  # noqa: F401 - now: a Ctrl-C inside matplotlib's first import would break the final report

    earlier_records = {run_key(r["experiment"], r["seed"]): r for r in finished or []}
    done = {key: r for key, r in earlier_records.items() if r["status"] in FINISHED_STATUSES}
    result = SuiteResult(run_dir)
    plan_keys = plan.keys()
    meta_path = run_dir / RUN_FILE  # already there only when resuming: keep when the run first started
    earlier = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    meta = {
        "schema_version": SCHEMA_VERSION,
        "suite": plan.suite,
        "config_path": str(Path(plan.config_path).absolute()),  # a resume from another folder still finds it
        "config": plan.describe(),
        "seeds": plan.seeds,
        "plan": plan_keys,
        "fingerprints": bench.fingerprints,
        "device": describe(bench.device),
        "environment": environment(),
        "started": earlier["started"] if earlier else now(),
        "resumed": [*earlier.get("resumed", []), now()] if earlier else [],
        "resumed_runs": sorted(done),
        "status": "running",
    }
    if earlier and (changed := fingerprint_difference(earlier, meta)):
        raise UsageError(f"cannot resume '{run_dir}': {changed} changed since it started; start a new run")
    pending = [(e, seed) for e in plan.experiments for seed in plan.seeds if run_key(e.id, seed) not in done]
    result.records = in_plan_order(list(earlier_records.values()), plan_keys)  # a failed one stays until its rerun ends
    executor = executor or LocalExecutor()
    with RunLock(run_dir):
        write_json(run_dir / RUN_FILE, meta)
        status = "interrupted"
        runs = executor.run(bench, pending, observer, retry_oom)
        try:
            for record in runs:
                _keep(run_dir, result, record, plan_keys)
                write_reports(run_dir, meta, result.records)
                observer.run_done(record)
            status = "finished"
        except KeyboardInterrupt:
            in_flight = executor.in_flight()
            runs.close()  # the executor stops what it still runs, wherever the interrupt landed
            for experiment, seed in in_flight:  # recorded too, then the interrupt goes on
                _keep(run_dir, result, {**failed_record(experiment, seed, stop_reason()), "status": "interrupted"}, plan_keys)
            raise
        finally:
            meta.update(status=status, finished=now())
            write_json(run_dir / RUN_FILE, meta)
            write_reports(run_dir, meta, result.records)
    return result


def _keep(run_dir: Path, result: SuiteResult, record: dict, plan_keys: list[str]) -> None:
    """Save a finished record (its traceback to errors.log) in place of any earlier one for its run,
    and keep the records in plan order."""
    trace = record.pop("traceback", None)
    if trace:  # rewritten whole and atomically, like every other file of a run directory
        log = run_dir / ERRORS_LOG
        earlier = log.read_text(encoding="utf-8") if log.exists() else ""
        write_atomic(log, f"{earlier}== {run_key(record['experiment'], record['seed'])}\n{trace}\n")
    save_run_record(run_dir, record)
    key = run_key(record["experiment"], record["seed"])
    result.records = in_plan_order([*(r for r in result.records if run_key(r["experiment"], r["seed"]) != key), record], plan_keys)


def dry_run(plan: SuitePlan) -> list[dict]:
    """Build every experiment's model and count its parameters; no data, no training."""
    from vptbench.harness.runner import count_parameters

    model = load_model(plan.model_name, plan.model)
    task = task_for(plan.dataset, model)
    rows = []
    for experiment in plan.experiments:
        row = {"experiment": experiment.id, "tuner": experiment.spec.tuner, "status": "ok", "error": ""}
        if experiment.tuner is None:
            rows.append({**row, "status": "failed", "error": experiment.error})
            continue
        try:
            tuner, _ = experiment.build(model.clip, task)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is that experiment's row, as in a real run
            rows.append({**row, "status": "failed", "error": f"{type(exc).__name__}: {first_line(exc)}"})
            continue
        trainable, total = count_parameters(tuner)
        reference = experiment.spec.reference.trainable_params if experiment.spec.reference else None
        rows.append({**row, "trainable_params": trainable, "total_params": total, "ref_trainable_params": reference})
    return rows
