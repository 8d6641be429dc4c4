"""Runs of one suite made separately (seeds on different days, a resumed machine) reported as one."""

from __future__ import annotations

import shutil
from pathlib import Path

from vptbench.errors import UsageError
from vptbench.registry import Training
from vptbench.results.io import write_atomic
from vptbench.results.manifest import ExperimentEntry, Overlap, RunManifest
from vptbench.results.records import RunRecord, in_plan_order, split_run_key
from vptbench.results.rundir import ERRORS_LOG, load_run_dir, save_manifest, save_run_record
from vptbench.results.search import search_dir

DEFAULT_TRAINING = Training().model_dump(mode="json")


def combine_run_dirs(run_dirs: list[Path]) -> tuple[RunManifest, list[RunRecord]]:
    """Merge runs of one suite; for the same (experiment, seed) a later directory's record wins
    unless it measured less than an earlier one (ok beats diverged, which beats failed,
    interrupted or out of memory)."""
    repeated = next((d for i, d in enumerate(run_dirs) if d.resolve() in {e.resolve() for e in run_dirs[:i]}), None)
    if repeated is not None:
        raise UsageError(f"'{repeated}' is named twice; name each run directory once")
    loaded = [load_run_dir(d) for d in run_dirs]
    suites = {manifest.suite for manifest, _ in loaded}
    if len(suites) > 1:
        raise UsageError(f"cannot combine runs of different suites: {', '.join(sorted(suites))}")
    experiments: dict[str, ExperimentEntry] = {}  # every experiment any of them ran, in plan order
    brought_by: dict[str, Path] = {}
    fingerprinted = next((i for i, (m, _) in enumerate(loaded) if m.fingerprints), 0)  # runs before fingerprints have none
    first = loaded[0][0]
    for run_dir, (manifest, _) in zip(run_dirs, loaded, strict=True):
        if setup := _setup_difference(first, manifest):
            raise UsageError(f"cannot combine '{run_dirs[0]}' and '{run_dir}': they ran with different {setup}")
        if changed := fingerprint_difference(loaded[fingerprinted][0], manifest):
            raise UsageError(f"cannot combine '{run_dirs[fingerprinted]}' and '{run_dir}': {changed} differ between them")
        for experiment_id, settings in manifest.config.experiments.items():
            if experiment_id not in experiments:
                experiments[experiment_id], brought_by[experiment_id] = settings, run_dir
            elif changed := _settings_difference(experiments[experiment_id], settings):
                raise UsageError(
                    f"cannot combine '{brought_by[experiment_id]}' and '{run_dir}': they ran with different "
                    f"settings of {experiment_id} ({changed})"
                )
    by_key: dict[str, RunRecord] = {}
    source: dict[str, Path] = {}
    found_in: dict[str, list[Path]] = {}
    plan: list[str] = []
    for run_dir, (manifest, records) in zip(run_dirs, loaded, strict=True):
        plan += [key for key in manifest.plan if key not in plan]
        for record in records:
            found_in.setdefault(record.key, []).append(run_dir)
            if record.key not in by_key or record.status.measured >= by_key[record.key].status.measured:
                by_key[record.key], source[record.key] = record, run_dir
    position = {experiment_id: i for i, experiment_id in enumerate(experiments)}

    def by_experiment_then_seed(key: str) -> tuple[int, int]:
        experiment, seed = split_run_key(key)
        return position.get(experiment, len(position)), seed

    plan.sort(key=by_experiment_then_seed)
    overlaps = [  # runs found in several directories: which one is reported
        Overlap(run=key, reported=str(source[key]), in_=[str(d) for d in dirs]) for key, dirs in found_in.items() if len(dirs) > 1
    ]
    starts, ends = [m.started for m, _ in loaded], [m.finished for m, _ in loaded]
    combined = first.model_copy(
        update={
            "config": first.config.model_copy(update={"experiments": experiments}),
            "seeds": sorted({seed for m, _ in loaded for seed in m.seeds}),
            "plan": plan,
            "status": "combined",
            "started": min(s for s in starts if s) if all(starts) else None,  # the whole span, unknown where a source does not say
            "finished": max(e for e in ends if e) if all(ends) else None,
            "resumed": [],  # each source's own resumes are in its run.json
            "resumed_runs": [],
            "sources": [str(d) for d in run_dirs],
            "overlapping_runs": overlaps,
            "damaged_records": [damage for m, _ in loaded for damage in m.damaged_records],
        }
    )
    return combined, in_plan_order(list(by_key.values()), plan)


def copy_run_records(run_dir: Path, manifest: RunManifest, records: list[RunRecord]) -> None:
    """A new run directory's run.json, records and errors.log (where failed records point), for a
    report made elsewhere than where they ran; a copy of one run keeps its search (trials, study,
    summary), which several runs' combination cannot merge."""
    logs = [(source, Path(source) / ERRORS_LOG) for source in manifest.sources]
    traces = "".join(f"==== from {source}\n{log.read_text(encoding='utf-8')}" for source, log in logs if log.is_file())
    if traces:
        write_atomic(run_dir / ERRORS_LOG, traces)
    save_manifest(run_dir, manifest)
    for record in records:
        save_run_record(run_dir, record)
    if len(manifest.sources) == 1 and search_dir(Path(manifest.sources[0])).is_dir():
        shutil.copytree(search_dir(Path(manifest.sources[0])), search_dir(run_dir), dirs_exist_ok=True)


def _setup_difference(first: RunManifest, other: RunManifest) -> str:
    """The model or dataset when two runs' configurations differ in it, else "". Seeds may differ:
    adding seeds is what combining is for; so may where a local folder sits (another checkout,
    another machine, or a run recorded before paths were made absolute)."""

    def located_anywhere(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k != "path"}

    for what in ("model", "dataset"):
        names = getattr(first.config, f"{what}_name"), getattr(other.config, f"{what}_name")
        if names[0] != names[1]:
            return f"{what} ('{names[0]}' and '{names[1]}')"
        if located_anywhere(getattr(first.config, what)) != located_anywhere(getattr(other.config, what)):
            return f"{what} (both named '{names[0]}', declared differently)"
    return ""


def fingerprint_difference(first: RunManifest, other: RunManifest) -> str:
    """What two runs name alike but recorded different fingerprints of: "model 'x' (its weights,
    settings, tokenizer or normalisation)", "dataset 'y' (...)", both, or "" (also when either run
    predates fingerprints)."""
    ours, theirs = first.fingerprints, other.fingerprints
    if not ours or not theirs:
        return ""
    comparable = {"dataset"} | ({"model"} if ours.get("model_scheme", 1) == theirs.get("model_scheme", 1) else set())  # hashed alike
    parts = (("model", first.config.model_name, "its weights, settings, tokenizer or normalisation"), ("dataset", first.config.dataset_name, "its images or labels, as decoded for the model"))
    changed = [f"{what} '{name}' ({covers})" for what, name, covers in parts if what in comparable and ours.get(what) != theirs.get(what)]
    return " and ".join(changed)


def _settings_difference(first: ExperimentEntry, other: ExperimentEntry) -> str:
    """The settings of one experiment that differ between two runs and change its results, or ""."""
    a, b = _result_shaping(first), _result_shaping(other)
    return ", ".join(sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key)))


def _result_shaping(experiment: ExperimentEntry) -> dict:
    """An experiment's settings flattened to the ones that change its results."""
    recorded = {**DEFAULT_TRAINING, **experiment.training}  # a run recorded before a setting existed ran its default
    training = {f"training.{k}": v for k, v in recorded.items() if k != "seeds"}
    return {"tuner": experiment.tuner, "params": experiment.params, **training}
