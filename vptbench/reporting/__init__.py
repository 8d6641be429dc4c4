"""Everything a reader sees: CSV, Markdown with plots, JSON and the console table. Importing the
package costs nothing: pandas and matplotlib load when a report is written."""

from __future__ import annotations

from pathlib import Path

from vptbench.results.io import json_text, write_atomic
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord

RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"


FORMATS = ("md", "csv", "json")


def write_reports(run_dir: Path, meta: RunManifest, records: list[RunRecord], formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """(Re)write a run directory's report files of the given formats from its records (md comes
    with its plots); the list of files written."""
    from vptbench.reporting.markdown import markdown_report
    from vptbench.reporting.plots import write_plots
    from vptbench.reporting.schema import Report
    from vptbench.reporting.tables import csv_text, flat_frame, summarize

    frame = flat_frame(records)
    written = []
    if "csv" in formats:
        write_atomic(run_dir / RESULTS_CSV, csv_text(frame))
        write_atomic(run_dir / SUMMARY_CSV, csv_text(summarize(frame, meta.plan)))
        written += [run_dir / RESULTS_CSV, run_dir / SUMMARY_CSV]
    if "md" in formats:
        plots = write_plots(run_dir, records)
        write_atomic(run_dir / REPORT_MD, markdown_report(meta, records, frame, plots))
        written += [run_dir / REPORT_MD, *plots]
    if "json" in formats:
        report = Report(**dict(meta), runs=records)
        write_atomic(run_dir / REPORT_JSON, json_text(report.model_dump(mode="json")))
        written.append(run_dir / REPORT_JSON)
    return written
