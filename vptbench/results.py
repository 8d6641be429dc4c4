"""A run directory: written atomically as runs finish, read back by `vptbench report`."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from vptbench.errors import UsageError, WriteError, folder_missing

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
RUNS_DIR = "runs"
ERRORS_LOG = "errors.log"  # the tracebacks of failed runs
HISTORY_DIR = "history"
UMASK = os.umask(0o022)  # reading the umask means setting it: put it straight back
os.umask(UMASK)
PACKAGES = ("vptbench", "torch", "transformers", "datasets", "pydantic", "scikit-learn", "numpy")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Temporary file, fsync, rename: a reader (or a resume after kill -9) never sees half a file."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write '{path}': {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp's owner-only mode would hide results from colleagues
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"cannot write '{path}': {exc.strerror}") from None
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def new_run_dir(output: Path, suite: str) -> Path:
    """`<output>/<suite>-<UTC timestamp>`, created now so an unwritable folder fails before training."""
    if problem := folder_problem(output):
        raise UsageError(f"--output: cannot write results to '{output}': {problem}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = output / f"{suite}-{stamp}"
    suffix = 1
    while True:
        try:
            run_dir.mkdir(parents=True)
            break
        except FileExistsError:  # another run started in the same second
            suffix += 1
            run_dir = output / f"{suite}-{stamp}-{suffix}"
        except OSError as exc:
            raise UsageError(f"--output: cannot write results to '{output}': {exc.strerror}") from None
    return run_dir


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be made in `folder` or, where it does not exist yet, in the nearest folder
    above it that does; None when they can. A quick check before minutes of loading."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"'{existing}' is a file"
    return write_problem(existing)


def write_problem(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None; checked by trying, as permissions alone
    miss read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class RunLock:
    """One writer per run directory; a lock left by a dead process is taken over, not obeyed forever."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"

    def __enter__(self) -> RunLock:
        try:
            return self._acquire()
        except OSError as exc:  # a read-only folder, say
            raise WriteError(f"cannot lock '{self.path.parent}': {exc.strerror}") from None

    def _acquire(self) -> RunLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = self.path.read_text().strip()
                except FileNotFoundError:  # released between the two calls: try again
                    continue
                if _alive(holder):
                    raise self._in_use(holder) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            return self
        raise UsageError(f"cannot lock '{self.path.parent}'")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)

    def check_free(self) -> None:
        """Fail now, before minutes of loading, if a live run holds the directory; the lock itself
        is taken when writing starts."""
        try:
            holder = self.path.read_text().strip()
        except OSError:
            return
        if _alive(holder):
            raise self._in_use(holder)

    def _in_use(self, holder: str) -> UsageError:
        return UsageError(f"'{self.path.parent}' is in use by another vptbench run (process {holder}); wait for it to finish")


def _alive(holder: str) -> bool:
    """Whether the `host pid` that wrote a lock still runs (a lock from another host counts as alive)."""
    host, _, pid = holder.partition(" ")
    if not pid.isdigit():
        return not holder  # empty: its writer is between creating and writing it
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_key(experiment_id: str, seed: int) -> str:
    return f"{experiment_id}-seed{seed}"


def split_run_key(key: str) -> tuple[str, int]:
    """The (experiment, seed) that `run_key` made `key` of."""
    experiment, seed = key.rsplit("-seed", 1)
    return experiment, int(seed)


def save_run_record(run_dir: Path, record: dict) -> None:
    """The full record as JSON and its per-epoch history as CSV."""
    key = run_key(record["experiment"], record["seed"])
    write_json(run_dir / RUNS_DIR / f"{key}.json", record)
    header = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "train_seconds"]
    lines = [",".join(header)] + [",".join("" if row[h] is None else repr(row[h]) for h in header) for row in record.get("history", [])]
    write_atomic(run_dir / HISTORY_DIR / f"{key}.csv", "\n".join(lines) + "\n")


def load_run_dir(run_dir: Path) -> tuple[dict, list[dict]]:
    """run.json's metadata and every readable run record, in plan order. A damaged record (a copy cut
    short, a hand edit) counts as not run, named in the metadata's `damaged_records`, so that the
    others still report and `--resume` reruns it; a damaged run.json is a usage error."""
    if not run_dir.is_dir():
        raise UsageError(f"run directory '{run_dir}' {folder_missing(run_dir)}")
    meta_path = run_dir / RUN_FILE
    if not meta_path.is_file():
        runs = [p.parent for p in run_dir.glob(f"*/{RUN_FILE}")]  # a folder of runs, such as results/
        hint = f"; it holds run directories: name one, such as its latest '{_latest(runs)}'" if runs else ""
        raise UsageError(f"'{run_dir}' is not a vptbench run directory (no {RUN_FILE}){hint}")
    meta, problem = _read_json(meta_path)
    if problem:
        raise UsageError(f"'{run_dir}': cannot read {RUN_FILE}: {problem}")
    missing = [key for key in ("schema_version", "suite", "config", "seeds", "plan") if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise UsageError(f"'{run_dir}' is not a valid vptbench run directory ({RUN_FILE} lacks {', '.join(missing)})")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise UsageError(f"'{run_dir}' was written with results schema {meta['schema_version']}; this vptbench reads schema {SCHEMA_VERSION}")
    records, damaged = [], []
    for path in sorted((run_dir / RUNS_DIR).glob("*.json")):
        record, problem = _read_json(path)
        if problem or (problem := _record_problem(record)) or (problem := _misplaced(record, path, meta)):
            damaged.append({"path": str(path), "problem": problem})
        else:
            records.append(record)
    # a copy or combination keeps its sources' damaged records: their runs are missing from it too
    return {**meta, "damaged_records": [*meta.get("damaged_records", []), *damaged]}, in_plan_order(records, meta["plan"])


def _misplaced(record: dict, path: Path, meta: dict) -> str:
    """Why a valid record does not belong where it lies (copied over another, edited), or ""."""
    key = run_key(record["experiment"], record["seed"])
    if path.stem != key:
        return f"it holds the record of {key}"
    if key not in meta["plan"]:
        return f"{key} is not in this run's plan"
    planned = meta["config"].get("experiments", {}).get(record["experiment"], {}).get("tuner")
    if planned and planned != record["tuner"]:
        return f"it was made by tuner {record['tuner']}, but {record['experiment']} runs {planned}"
    return ""


def _read_json(path: Path) -> tuple[Any, str]:
    """A JSON file's content and "", or None and why it could not be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, str(exc)


def _record_problem(record) -> str:
    """Why `record` is not a run record report.json may hold (empty when it is)."""
    from pydantic import ValidationError

    from vptbench.reporting.schema import RunRecord

    try:
        RunRecord.model_validate(record)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return ""


def combine_run_dirs(run_dirs: list[Path]) -> tuple[dict, list[dict]]:
    """Merge runs of one suite made separately (e.g. seeds on different days); for the same
    (experiment, seed) a later directory's record wins unless it measured less than an earlier one
    (ok beats diverged, which beats failed, interrupted or out of memory)."""
    repeated = next((d for i, d in enumerate(run_dirs) if d.resolve() in {e.resolve() for e in run_dirs[:i]}), None)
    if repeated is not None:
        raise UsageError(f"'{repeated}' is named twice; name each run directory once")
    loaded = [load_run_dir(d) for d in run_dirs]
    suites = {meta["suite"] for meta, _ in loaded}
    if len(suites) > 1:
        raise UsageError(f"cannot combine runs of different suites: {', '.join(sorted(suites))}")
    experiments: dict[str, dict] = {}  # every experiment any of them ran, in plan order
    brought_by: dict[str, Path] = {}
    fingerprinted = next((i for i, (meta, _) in enumerate(loaded) if meta.get("fingerprints")), 0)  # runs before fingerprints have none
    for run_dir, (meta, _) in zip(run_dirs, loaded, strict=True):
        setup = _setup_difference(loaded[0][0]["config"], meta["config"])
        if setup:
            raise UsageError(f"cannot combine '{run_dirs[0]}' and '{run_dir}': they ran with different {setup}")
        if changed := fingerprint_difference(loaded[fingerprinted][0], meta):
            raise UsageError(f"cannot combine '{run_dirs[fingerprinted]}' and '{run_dir}': {changed} differ between them")
        for experiment_id, settings in meta["config"].get("experiments", {}).items():
            if experiment_id not in experiments:
                experiments[experiment_id], brought_by[experiment_id] = settings, run_dir
            elif changed := _settings_difference(experiments[experiment_id], settings):
                raise UsageError(
                    f"cannot combine '{brought_by[experiment_id]}' and '{run_dir}': they ran with different "
                    f"settings of {experiment_id} ({changed})"
                )
    by_key: dict[str, dict] = {}
    source: dict[str, Path] = {}
    found_in: dict[str, list[Path]] = {}
    plan: list[str] = []
    for run_dir, (meta, records) in zip(run_dirs, loaded, strict=True):
        plan += [key for key in meta.get("plan", []) if key not in plan]
        for record in records:
            key = run_key(record["experiment"], record["seed"])
            found_in.setdefault(key, []).append(run_dir)
            if key not in by_key or _measured(record) >= _measured(by_key[key]):
                by_key[key], source[key] = record, run_dir
    position = {experiment_id: i for i, experiment_id in enumerate(experiments)}

    def by_experiment_then_seed(key: str) -> tuple[int, int]:
        experiment, seed = split_run_key(key)
        return position.get(experiment, len(position)), seed

    plan.sort(key=by_experiment_then_seed)
    overlaps = [  # runs found in several directories: which one is reported
        {"run": key, "reported": str(source[key]), "in": [str(d) for d in dirs]} for key, dirs in found_in.items() if len(dirs) > 1
    ]
    meta = {
        **loaded[0][0],
        "config": {**loaded[0][0]["config"], "experiments": experiments},
        "seeds": sorted({seed for m, _ in loaded for seed in m["seeds"]}),
        "plan": plan,
        "status": "combined",
        **_span([m for m, _ in loaded]),
        "resumed": [],  # each source's own resumes are in its run.json
        "resumed_runs": [],
        "sources": [str(d) for d in run_dirs],
        "overlapping_runs": overlaps,
        "damaged_records": [damage for m, _ in loaded for damage in m["damaged_records"]],
    }
    return meta, in_plan_order(list(by_key.values()), plan)


def _span(metas: list[dict]) -> dict:
    """When the combined runs started and finished: the earliest start and the latest end, None
    where a source does not say."""
    starts, ends = [m.get("started") for m in metas], [m.get("finished") for m in metas]
    return {"started": min(starts) if all(starts) else None, "finished": max(ends) if all(ends) else None}


def copy_run_records(run_dir: Path, meta: dict, records: list[dict]) -> None:
    """A new run directory's run.json, records and errors.log (where failed records point), for a
    report made elsewhere than where they ran."""
    logs = [(source, Path(source) / ERRORS_LOG) for source in meta["sources"]]
    traces = "".join(f"==== from {source}\n{log.read_text(encoding='utf-8')}" for source, log in logs if log.is_file())
    if traces:
        write_atomic(run_dir / ERRORS_LOG, traces)
    write_json(run_dir / RUN_FILE, meta)
    for record in records:
        save_run_record(run_dir, record)


def _measured(record: dict) -> int:
    """How much a record measured: a finished run (ok, or diverged with its curves) over one cut short."""
    return {"ok": 2, "diverged": 1}.get(record["status"], 0)


def _setup_difference(first: dict, other: dict) -> str:
    """The model or dataset when two runs' configurations differ in it, else "". Seeds may differ:
    adding seeds is what combining is for; so may where a local folder sits (another checkout,
    another machine, or a run recorded before paths were made absolute)."""

    def located_anywhere(spec):
        return {k: v for k, v in spec.items() if k != "path"} if isinstance(spec, dict) else spec

    for what in ("model", "dataset"):
        names = first.get(f"{what}_name"), other.get(f"{what}_name")
        if names[0] != names[1]:
            return f"{what} ('{names[0]}' and '{names[1]}')"
        if located_anywhere(first.get(what)) != located_anywhere(other.get(what)):
            return f"{what} (both named '{names[0]}', declared differently)"
    return ""


def fingerprint_difference(first: dict, other: dict) -> str:
    """What two run.json files name alike but recorded different fingerprints of: "model 'x' (its
    weights, settings, tokenizer or normalisation)", "dataset 'y' (...)", both, or "" (also when
    either run predates fingerprints)."""
    ours, theirs = first.get("fingerprints") or {}, other.get("fingerprints") or {}
    if not ours or not theirs:
        return ""
    names = first["config"]
    comparable = {"dataset"} | ({"model"} if ours.get("model_scheme", 1) == theirs.get("model_scheme", 1) else set())  # hashed alike
    changed = [
        f"{what} '{names.get(f'{what}_name')}' ({parts})"
        for what, parts in (("model", "its weights, settings, tokenizer or normalisation"), ("dataset", "its images or labels, as decoded for the model"))
        if what in comparable and ours.get(what) != theirs.get(what)
    ]
    return " and ".join(changed)


def _settings_difference(first: dict, other: dict) -> str:
    """The settings of one experiment that differ between two runs and change its results, or ""."""
    a, b = _result_shaping(first), _result_shaping(other)
    return ", ".join(sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key)))


def _result_shaping(experiment: dict) -> dict:
    """An experiment's settings flattened to the ones that change its results."""
    training = {f"training.{k}": v for k, v in experiment.get("training", {}).items() if k != "seeds"}
    return {"tuner": experiment.get("tuner"), "params": experiment.get("params"), **training}


def missing_runs(meta: dict, records: list[dict]) -> str:
    """A sentence naming the planned (experiment, seed) runs that have no record, or ""."""
    recorded = {run_key(r["experiment"], r["seed"]) for r in records}
    missing = [key for key in meta.get("plan", []) if key not in recorded]
    if not missing:
        return ""
    remedy = "`vptbench run --resume` on the directory that ran them, then report again" if meta.get("status") == "combined" else "`vptbench run --resume` runs them"
    return f"Not run: {', '.join(missing)} ({len(missing)} of {len(meta['plan'])} planned runs have no record; {remedy})"


def in_plan_order(records: list[dict], plan: list[str]) -> list[dict]:
    """Records ordered as the plan lists their (experiment, seed); any the plan lacks come last."""
    order = {key: i for i, key in enumerate(plan)}
    return sorted(records, key=lambda r: order.get(run_key(r["experiment"], r["seed"]), len(order)))


def latest_run_dir(output: Path) -> Path:
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output: '{output}' is a file, not a folder of runs")
    candidates = [p.parent for p in output.glob(f"*/{RUN_FILE}")]
    if not candidates:
        raise UsageError(f"no runs found under '{output}'; run `vptbench run --all` first or name a run directory")
    return _latest(candidates)


def _latest(run_dirs: list[Path]) -> Path:
    return max(run_dirs, key=lambda p: (p / RUN_FILE).stat().st_mtime)


def environment() -> dict:
    """Versions, commit and platform, so every result describes where it came from."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
