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
TRIALS_CSV = "trials.csv"  # a search's trials, only for a run that searched
SIGNIFICANCE_CSV = "significance.csv"  # pairs of strategies compared, only when at least two are comparable


FORMATS = ("md", "csv", "json")


def write_reports(run_dir: Path, meta: RunManifest, records: list[RunRecord], formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """(Re)write a run directory's report files of the given formats from its records (md comes
    with its plots); the list of files written."""
    from vptbench.reporting.markdown import markdown_report
    from vptbench.reporting.plots import write_plots
    from vptbench.reporting.schema import Report
    from vptbench.reporting.significance import compare, markdown_section
    from vptbench.reporting.significance import csv_text as significance_csv
    from vptbench.reporting.tables import csv_text, flat_frame, summarize
    from vptbench.results.search import load_summary, load_trial_records

    frame = flat_frame(records)
    search = load_summary(run_dir)  # None for a run without a search: its reports are as before
    trials = load_trial_records(run_dir) if search else []
    significance = compare(records, meta.plan)
    compared = not significance.pairs.empty  # else no section, no file, no key: fewer than two comparable strategies
    written = []
    if "csv" in formats:
        write_atomic(run_dir / RESULTS_CSV, csv_text(frame))
        write_atomic(run_dir / SUMMARY_CSV, csv_text(summarize(frame, meta.plan, records)))
        written += [run_dir / RESULTS_CSV, run_dir / SUMMARY_CSV]
        if search:
            from vptbench.reporting.search import trials_csv_text

            write_atomic(run_dir / TRIALS_CSV, trials_csv_text(trials))
            written.append(run_dir / TRIALS_CSV)
        if compared:
            write_atomic(run_dir / SIGNIFICANCE_CSV, significance_csv(significance))
            written.append(run_dir / SIGNIFICANCE_CSV)
        else:  # an earlier report's, of records since replaced
            (run_dir / SIGNIFICANCE_CSV).unlink(missing_ok=True)
    if "md" in formats:
        plots = write_plots(run_dir, records)
        section, search_plots = [], []
        if search:
            from vptbench.reporting.search import markdown_search_section, write_search_plots

            search_plots = write_search_plots(run_dir, search, trials)
            section = markdown_search_section(search, records, trials, search_plots)
        write_atomic(run_dir / REPORT_MD, markdown_report(meta, records, frame, plots, section, markdown_section(significance)))
        written += [run_dir / REPORT_MD, *plots, *search_plots]
    if "json" in formats:
        searched = {"summary": search.model_dump(mode="json"), "trials": [t.json_data() for t in trials]} if search else None
        report = Report(**dict(meta), runs=records, search=searched, significance=significance.json_data() if compared else None)
        write_atomic(run_dir / REPORT_JSON, json_text(report.model_dump(mode="json")))
        written.append(run_dir / REPORT_JSON)
    return written
