"""`vptbench report`: rebuild a run's reports, or a copy or combination of runs, without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vptbench.cli.options import RESULTS, count
from vptbench.cli.render import print_damaged, print_dataset_notes
from vptbench.errors import UsageError
from vptbench.terminal import console, reports_errors, table_console


@reports_errors
def report(
    run_dirs: Annotated[list[Path] | None, typer.Argument(help="Run directories (default: the latest under --output); several are combined.", show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="md, csv or json: write only that format (default: all).", show_default=False)] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where runs live: to find the latest, and where a combined report (or a copy of one run's report) goes; a run's own folder, or the one it sits in, rewrites it in place.", show_default="results"),
    ] = None,
) -> None:
    """Regenerate reports from saved results, without retraining."""
    from vptbench.reporting import FORMATS, write_reports
    from vptbench.reporting.console import summary_table
    from vptbench.reporting.markdown import missing_runs
    from vptbench.results.lock import RunLock
    from vptbench.results.rundir import latest_run_dir
    from vptbench.results.target import report_target

    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    run_dirs = run_dirs or [latest_run_dir(output or RESULTS)]
    target, manifest, records = report_target(run_dirs, output, RESULTS)
    print_damaged(manifest, run_dirs, "")
    with RunLock(target):  # never rewrite the reports of a run still writing them
        if manifest.status == "running":  # yet its lock was free: its process was killed or crashed
            manifest = manifest.model_copy(update={"status": "interrupted"})
        written = write_reports(target, manifest, records, (fmt,) if fmt else FORMATS)
    out = table_console()
    out.print(summary_table(records, manifest.plan, f"Suite '{manifest.suite}' — {target}", out.width))
    print_dataset_notes(records)
    if missing := missing_runs(manifest, records):
        console.print(f"[yellow]{escape(missing)}[/]", soft_wrap=True)
    for overlap in manifest.overlapping_runs:
        places = ", ".join(overlap.in_[:-1]) + f" and {overlap.in_[-1]}"
        console.print(escape(f"{overlap.run} is in {places}: the one in {overlap.reported} is reported"), soft_wrap=True)
    console.print(escape(f"wrote {count(len(written), 'file')} in {target}: " + ", ".join(p.name for p in written)), soft_wrap=True)
