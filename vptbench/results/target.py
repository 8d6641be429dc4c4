"""Where `vptbench report` writes: a run's own directory rewritten in place, or a new directory
holding a copy of one run's records or the combination of several."""

from __future__ import annotations

from pathlib import Path

from vptbench.errors import UsageError
from vptbench.results.combine import combine_run_dirs, copy_run_records
from vptbench.results.lock import RunLock
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord
from vptbench.results.rundir import load_run_dir, new_run_dir


def report_target(run_dirs: list[Path], output: Path | None, results: Path) -> tuple[Path, RunManifest, list[RunRecord]]:
    """The directory to write the report in, with the manifest and records it reports. One run
    directory is rewritten in place unless `output` names somewhere else than it or the folder it
    sits in; then, as for several, a new directory under `output` (default `results`) gets a copy."""
    if len(run_dirs) == 1 and (output is None or output.resolve() in (run_dirs[0].resolve(), run_dirs[0].resolve().parent)):
        manifest, records = load_run_dir(run_dirs[0])
        return run_dirs[0], manifest, records
    for run_dir in run_dirs:  # a half-written run would be copied as if it were finished
        RunLock(run_dir).check_free()
        if output and output.resolve().is_relative_to(run_dir.resolve()):
            raise UsageError(f"--output: '{output}' is inside the run directory '{run_dir}'; a copy of its report goes elsewhere")
    manifest, records = combine_run_dirs(run_dirs)
    target = new_run_dir(output or results, f"{manifest.suite}-{'combined' if len(run_dirs) > 1 else 'report'}")
    copy_run_records(target, manifest, records)
    return target, manifest, records
