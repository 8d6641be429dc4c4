"""A run directory: run.json, a record per (experiment, seed), their curves and failures' tracebacks.

Written as runs finish, each file atomically; read back by `report` and `run --resume`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from vptbench.errors import UsageError, folder_missing
from vptbench.results.io import folder_problem, read_json, write_atomic, write_json
from vptbench.results.manifest import SCHEMA_VERSION, Damage, RunManifest
from vptbench.results.records import RunRecord, in_plan_order

RUN_FILE = "run.json"
RUNS_DIR = "runs"
ERRORS_LOG = "errors.log"  # the tracebacks of failed runs
HISTORY_DIR = "history"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "train_seconds"]


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
            raise UsageError(f"--output: cannot write results to '{output}': {exc.strerror}") from exc
    return run_dir


def latest_run_dir(output: Path) -> Path:
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output: '{output}' is a file, not a folder of runs")
    candidates = [p.parent for p in output.glob(f"*/{RUN_FILE}")]
    if not candidates:
        raise UsageError(f"no runs found under '{output}'; run `vptbench run --all` first or name a run directory")
    return _latest(candidates)


def _latest(run_dirs: list[Path]) -> Path:
    return max(run_dirs, key=lambda p: (p / RUN_FILE).stat().st_mtime)


def save_manifest(run_dir: Path, manifest: RunManifest) -> None:
    write_json(run_dir / RUN_FILE, manifest.json_data())


def save_run_record(run_dir: Path, record: RunRecord) -> None:
    """The full record as JSON and its per-epoch history as CSV."""
    write_json(run_dir / RUNS_DIR / f"{record.key}.json", record.json_data())
    lines = [",".join(HISTORY_COLUMNS)]
    for row in record.history or []:
        values = row.model_dump()
        lines.append(",".join("" if values[h] is None else repr(values[h]) for h in HISTORY_COLUMNS))
    write_atomic(run_dir / HISTORY_DIR / f"{record.key}.csv", "\n".join(lines) + "\n")


def append_traceback(run_dir: Path, key: str, trace: str) -> None:
    """A failed run's traceback added to errors.log, rewritten whole and atomically like every
    other file of a run directory."""
    log = run_dir / ERRORS_LOG
    earlier = log.read_text(encoding="utf-8") if log.exists() else ""
    write_atomic(log, f"{earlier}== {key}\n{trace}\n")


def load_run_dir(run_dir: Path) -> tuple[RunManifest, list[RunRecord]]:
    """run.json's manifest and every readable run record, in plan order. A damaged record (a copy cut
    short, a hand edit) counts as not run, named in the manifest's `damaged_records`, so that the
    others still report and `--resume` reruns it; a damaged run.json is a usage error."""
    manifest = load_manifest(run_dir)
    records, damaged = [], []
    for path in sorted((run_dir / RUNS_DIR).glob("*.json")):
        data, problem = read_json(path)
        record = None
        if not problem:
            record, problem = _parse_record(data)
        if record is not None and not (problem := _misplaced(record, path, manifest)):
            records.append(record)
        else:
            damaged.append(Damage(path=str(path), problem=problem))
    # a copy or combination keeps its sources' damaged records: their runs are missing from it too
    manifest = manifest.model_copy(update={"damaged_records": [*manifest.damaged_records, *damaged]})
    return manifest, in_plan_order(records, manifest.plan)


def load_manifest(run_dir: Path) -> RunManifest:
    if not run_dir.is_dir():
        raise UsageError(f"run directory '{run_dir}' {folder_missing(run_dir)}")
    path = run_dir / RUN_FILE
    if not path.is_file():
        runs = [p.parent for p in run_dir.glob(f"*/{RUN_FILE}")]  # a folder of runs, such as results/
        hint = f"; it holds run directories: name one, such as its latest '{_latest(runs)}'" if runs else ""
        raise UsageError(f"'{run_dir}' is not a vptbench run directory (no {RUN_FILE}){hint}")
    data, problem = read_json(path)
    if problem:
        raise UsageError(f"'{run_dir}': cannot read {RUN_FILE}: {problem}")
    missing = [key for key in ("schema_version", "suite", "config", "seeds", "plan") if not isinstance(data, dict) or key not in data]
    if missing:
        raise UsageError(f"'{run_dir}' is not a valid vptbench run directory ({RUN_FILE} lacks {', '.join(missing)})")
    if data["schema_version"] != SCHEMA_VERSION:
        raise UsageError(f"'{run_dir}' was written with results schema {data['schema_version']}; this vptbench reads schema {SCHEMA_VERSION}")
    try:
        return RunManifest.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"'{run_dir}' is not a valid vptbench run directory ({RUN_FILE}: {validation_problem(exc)})") from exc


def _parse_record(data) -> tuple[RunRecord | None, str]:
    try:
        return RunRecord.model_validate(data), ""
    except ValidationError as exc:
        return None, validation_problem(exc)


def validation_problem(exc: ValidationError) -> str:
    """A validation error's first problem as `where: what`."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _misplaced(record: RunRecord, path: Path, manifest: RunManifest) -> str:
    """Why a valid record does not belong where it lies (copied over another, edited), or ""."""
    if path.stem != record.key:
        return f"it holds the record of {record.key}"
    if record.key not in manifest.plan:
        return f"{record.key} is not in this run's plan"
    planned = manifest.config.experiments.get(record.experiment)
    if planned and planned.tuner != record.tuner:
        return f"it was made by tuner {record.tuner}, but {record.experiment} runs {planned.tuner}"
    return ""
