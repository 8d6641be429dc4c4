"""What a suite run will do, resolved before anything loads: the suite, each experiment's tuner,
validated params and training settings, the seeds. Pure: the registry it reads is not changed, and
a resume rebuilds its plan from run.json through the same code that reads the registry."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from vptbench import plugins
from vptbench.errors import ConfigError, PluginError, UsageError, first_few, unknown_name
from vptbench.harness.search.checks import check_suite_search, search_for
from vptbench.registry import DatasetSpec, Experiment, ModelSpec, Registry, Suite, Training, load_registry
from vptbench.registry.load import paths_from
from vptbench.registry.params import validate_params
from vptbench.registry.schema import SUITE_WIDE, TrainingOverride
from vptbench.registry.search import ResolvedSearch
from vptbench.results.manifest import ExperimentEntry, RunConfig, RunManifest
from vptbench.results.records import RunRecord, run_key
from vptbench.results.rundir import load_run_dir

if TYPE_CHECKING:
    from torch import nn

    from vptbench.harness.search.trial import TrialSpec
    from vptbench.protocol import Task


@dataclass
class PlannedExperiment:
    """An experiment resolved against its tuner: class, validated config and training settings."""

    id: str
    spec: Experiment
    training: Training
    tuner: type | None
    config: Any
    error: str = ""  # why the tuner cannot be used; the run is recorded as failed
    traceback: str = ""  # and where, when its plugin failed to import
    search: ResolvedSearch | None = None  # tuned on validation before its final runs
    trial: TrialSpec | None = None  # set on a search's trial: scored on validation, never tested

    def build(self, clip: nn.Module, task: Task) -> tuple[nn.Module, nn.Module]:
        """The tuner and the frozen copy of `clip` it wraps: what it unfreezes or changes touches no other run."""
        assert self.tuner is not None, "an experiment without its tuner is never built"
        frozen = copy.deepcopy(clip).requires_grad_(False)
        return self.tuner(self.config, frozen, task), frozen

    def params(self) -> dict:
        """The params as validated (defaults filled in), or as declared when the tuner is missing."""
        return self.config.model_dump(mode="json") if self.config is not None else dict(self.spec.params)

    def reference(self) -> dict | None:
        return self.spec.reference.model_dump() if self.spec.reference else None


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

    def describe(self) -> RunConfig:
        """The resolved configuration as run.json records it (and `plan_from_manifest` reads it back)."""
        return RunConfig(
            model_name=self.model_name,
            model=self.model.model_dump(mode="json"),
            dataset_name=self.dataset_name,
            dataset=self.dataset.model_dump(mode="json"),
            experiments={
                p.id: ExperimentEntry(
                    tuner=p.spec.tuner,
                    description=p.spec.description,
                    params=p.params(),
                    training={**p.training.model_dump(mode="json"), "seeds": self.seeds},  # --seeds included
                    reference=p.reference(),
                    search=p.search.model_dump(mode="json") if p.search else None,
                )
                for p in self.experiments
            },
        )


def select_suite(registry: Registry, name: str | None, model: str | None = None, dataset: str | None = None) -> tuple[str, Suite]:
    """The named (or default) suite; `model` and `dataset` swap in other declared ones for this run."""
    name = name or registry.default_suite
    assert name is not None  # the registry's validator fills it in
    if name not in registry.suites:
        raise UsageError(unknown_name("suite", name, registry.suites))
    suite = registry.suites[name]
    for option, value, declared in (("model", model, registry.models), ("dataset", dataset, registry.datasets)):
        if value is None:
            continue
        if value not in declared:
            raise UsageError(f"--{option}: " + unknown_name(option, value, declared))
        suite = suite.model_copy(update={option: value})
    return name, suite


def plan_experiments(
    suite_name: str, suite: Suite, config_path: Path, ids: list[str], overrides: dict[str, Any] | None = None, missing_tuner_fails_run: bool = False
) -> list[PlannedExperiment]:
    """Resolve each experiment's tuner and validate its params before anything runs; `overrides`
    (the command line's --epochs, --compile) replace those training settings of every experiment,
    validated as the registry's are. A tuner that is not installed is a config error, or with
    `missing_tuner_fails_run` (a resume of a run whose plugin has gone) fails its own runs."""
    ids = list(dict.fromkeys(ids))
    for experiment_id in ids:
        if experiment_id not in suite.experiments:
            raise UsageError(f"suite '{suite_name}': " + unknown_name("experiment", experiment_id, suite.experiments))
    available = plugins.find_plugins()
    plans, invalid = [], []
    for experiment_id in ids:
        spec = suite.experiments[experiment_id]
        where = f"suites.{suite_name}.experiments.{experiment_id}"
        if spec.tuner not in available and not missing_tuner_fails_run:
            invalid.append(f"{config_path}: {where}.tuner: " + unknown_name("tuner", spec.tuner, available))
            continue
        try:
            training = suite.training_for(experiment_id).with_changes(**(overrides or {}))
        except ValidationError as exc:
            raise UsageError(f"{where}.training: {first_few([str(e['msg']) for e in exc.errors()])}") from exc
        try:
            tuner = plugins.load_tuner(spec.tuner)
        except PluginError as exc:  # a broken plugin fails its own experiments, not the suite
            plans.append(PlannedExperiment(experiment_id, spec, training, None, None, str(exc), exc.traceback))
            continue
        try:
            config = validate_params(tuner.Config, spec.params, config_path, prefix=f"{where}.params")
            search = search_for(suite_name, suite, experiment_id, training, tuner.Config, config_path)
        except ConfigError as exc:
            invalid.append(str(exc))
            continue
        plans.append(PlannedExperiment(experiment_id, spec, training, tuner, config, search=search))
    if invalid:
        raise invalid_experiments(config_path, invalid)
    check_suite_search(suite_name, suite, [(p.config, p.search) for p in plans], config_path)
    return plans


def invalid_experiments(config_path: Path, errors: list[str]) -> ConfigError:
    """One error counting every invalid experiment (naming the first few), so that fixing one does
    not just reveal the next; `vptbench list` shows each."""
    unique = list(dict.fromkeys(errors))  # a suite-wide problem (its search's, say) is every experiment's: said once
    if len(unique) == 1:
        return ConfigError(unique[0])
    prefix = f"{config_path}: "
    return ConfigError(f"{prefix}{len(errors)} experiments are invalid: " + first_few([e.removeprefix(prefix) for e in unique], sep="; "))


def check_experiments(suite_name: str, suite: Suite, config_path: Path) -> list[dict]:
    """Each experiment as `vptbench list` shows it: ok, invalid (its config error) or broken (its plugin's),
    with its resolved search (None: untuned). A problem across the suite's searches is raised."""
    rows, plans = [], []
    for experiment_id, spec in suite.experiments.items():
        search = None
        try:
            (planned,) = plan_experiments(suite_name, suite, config_path, [experiment_id])
            status, error = ("broken", planned.error) if planned.error else ("ok", "")
            plans.append(planned)
            search = planned.search.model_dump(mode="json") if planned.search else None
        except ConfigError as exc:
            status, error = "invalid", str(exc)
        rows.append({"id": experiment_id, "tuner": spec.tuner, "params": spec.params, "description": spec.description, "status": status, "error": error, "search": search})
    if len(plans) == len(suite.experiments):  # each checked alone above: now the suite's searches together
        check_suite_search(suite_name, suite, [(p.config, p.search) for p in plans], config_path)
    return rows


def suite_plan(registry: Registry, config_path: Path, suite_name: str, suite: Suite, experiments: list[PlannedExperiment], seeds: list[int] | None) -> SuitePlan:
    """The plan of `suite` (as `select_suite` chose it) from the registry that declares its parts;
    `seeds` (--seeds) are a searched suite's final seeds."""
    searched = [e.search for e in experiments if e.search]
    seeds = seeds or (searched[0].final_seeds if searched else list(suite.training.seeds))
    for search in searched:
        search.final_seeds = seeds
    return SuitePlan(
        suite_name, suite.model, registry.models[suite.model], suite.dataset, registry.datasets[suite.dataset],
        experiments, seeds, str(config_path),
    )  # fmt: skip


def plan_from_manifest(manifest: RunManifest, overrides: dict[str, Any] | None = None) -> SuitePlan:
    """Rebuild a run's plan from its own run.json, so a resume ignores later edits to the TOML: the
    recorded settings become a one-suite registry, planned by the code that plans the TOML's."""
    config, config_path = manifest.config, Path(manifest.config_path or "run.json")
    try:
        suite = _suite_of(manifest)
        registry = Registry(
            models={config.model_name: paths_from(config_path.parent, ModelSpec.model_validate(config.model))},  # a run recorded before paths were made absolute
            datasets={config.dataset_name: paths_from(config_path.parent, DatasetSpec.model_validate(config.dataset))},
            suites={manifest.suite: suite},
        )
        experiments = plan_experiments(manifest.suite, suite, config_path, list(suite.experiments), overrides, missing_tuner_fails_run=True)
    except (ValidationError, ConfigError, StopIteration) as exc:
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no experiments'}"
        raise UsageError(f"cannot resume: run.json does not describe a runnable plan ({problem})") from exc
    return suite_plan(registry, config_path, manifest.suite, suite, experiments, list(manifest.seeds))


def _suite_of(manifest: RunManifest) -> Suite:
    """The suite as it ran: each experiment's recorded training as its override; the settings alike
    for every experiment (validation split, evaluation batch, seeds) as the suite's."""
    entries = manifest.config.experiments
    shared = {**next(iter(entries.values())).training, "seeds": manifest.seeds}
    experiments = {
        experiment_id: Experiment(
            tuner=entry.tuner,
            description=entry.description,
            params=entry.params,
            reference=entry.reference,
            training=TrainingOverride.model_validate({k: v for k, v in entry.training.items() if k not in SUITE_WIDE}),
            search=ResolvedSearch.model_validate(entry.search).as_table() if entry.search else None,
        )
        for experiment_id, entry in entries.items()
    }
    return Suite(model=manifest.config.model_name, dataset=manifest.config.dataset_name, training=Training.model_validate(shared), experiments=experiments)


def plan_for_resume(run_dir: Path, overrides: dict[str, Any] | None = None) -> tuple[SuitePlan, RunManifest, list[RunRecord]]:
    """The plan a run directory recorded (with `overrides` of settings that do not change results,
    such as the time limit), its manifest and its records; a combined or copied report is refused,
    since its runs belong to other directories."""
    manifest, records = load_run_dir(run_dir)
    if manifest.status == "combined":
        sources = manifest.sources
        what = f"combines the reports of {', '.join(sources)}; resume one of those" if len(sources) > 1 else f"is a copy of {sources[0]}'s report; resume that"
        raise UsageError(f"--resume: '{run_dir}' {what}")
    return plan_from_manifest(manifest, overrides), manifest, records


def plan_from_registry(
    config: Path | None, suite: str | None, ids: list[str] | None, seeds: list[int] | None, overrides: dict[str, Any] | None = None,
    model: str | None = None, dataset: str | None = None,
) -> SuitePlan:  # fmt: skip
    """The plan of a suite of the registry at `config` (default: ./benchmark.toml, else the packaged
    one): the named experiments (default: all) and seeds (default: the suite's)."""
    registry, config_path = load_registry(config)
    suite_name, chosen = select_suite(registry, suite, model, dataset)
    experiments = plan_experiments(suite_name, chosen, config_path, ids or list(chosen.experiments), overrides)
    return suite_plan(registry, config_path, suite_name, chosen, experiments, seeds)
