"""Where a suite's finished runs go as they finish: each record saved and its row appended to
results.csv at once; the full reports (summary, Markdown, plots, JSON) once, at the end or on a
stop. So the cost of keeping a result does not grow with the number of runs before it."""

from __future__ import annotations

from pathlib import Path

from vptbench.reporting import RESULTS_CSV, write_reports
from vptbench.reporting.tables import csv_text, flat_frame
from vptbench.results.io import append_text, write_atomic
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord
from vptbench.results.rundir import append_traceback, save_manifest, save_run_record


class ReportSink:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def start(self, manifest: RunManifest, kept: list[RunRecord]) -> None:
        """run.json as the run starts, and results.csv with the rows it keeps (a resume's), or none
        until the first run finishes."""
        save_manifest(self.run_dir, manifest)
        if kept:
            write_atomic(self.results_csv, csv_text(flat_frame(kept)))
        else:
            self.results_csv.unlink(missing_ok=True)

    def add(self, record: RunRecord) -> None:
        """The record (the source of truth: written first), its traceback, then its row."""
        if record.traceback:
            append_traceback(self.run_dir, record.key, record.traceback)
        save_run_record(self.run_dir, record)
        if self.results_csv.exists():
            append_text(self.results_csv, csv_text(flat_frame([record]), header=False))
        else:
            write_atomic(self.results_csv, csv_text(flat_frame([record])))

    @property
    def results_csv(self) -> Path:
        return self.run_dir / RESULTS_CSV

    def finish(self, manifest: RunManifest, records: list[RunRecord]) -> None:
        """run.json's final state and every report, rewritten whole from the records."""
        save_manifest(self.run_dir, manifest)
        write_reports(self.run_dir, manifest, records)
