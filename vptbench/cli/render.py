"""What `run` and `report` print after the work: the summary table, each run's problems, notes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from vptbench.cli.options import count
from vptbench.errors import ExitCode
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord, Status, missing_keys
from vptbench.terminal import console, table_console

SUMMARY_JSON_KEYS = ("experiment", "tuner", "seed", "status", "error", "trainable_params", "val_accuracy", "test_accuracy", "test_macro_f1", "epochs_to_converge", "train_seconds")


def print_summary(records: list[RunRecord], plan: list[str], suite: str, run_dir: Path, as_json: bool) -> None:
    """The runs' table (on stderr when stdout carries JSON) and the planned runs with no record (a
    stop before them); with --json their JSON summary."""
    from vptbench.reporting.console import summary_table
    from vptbench.reporting.markdown import not_run_sentence

    out = table_console(stderr=as_json)
    out.print(summary_table(records, plan, f"Suite '{suite}' — {run_dir}", out.width))
    print_search(run_dir, records, stderr=as_json)
    missing = missing_keys(plan, records)
    if missing:
        console.print(f"[yellow]{escape(not_run_sentence(missing, len(plan)))}[/]", soft_wrap=True)
    if as_json:
        runs = [{key: value for key, value in r.json_data().items() if key in SUMMARY_JSON_KEYS} for r in records]
        from vptbench.results.search import load_summary

        summary = load_summary(run_dir)
        searched = {"search": summary.model_dump(mode="json")} if summary else {}
        typer.echo(json.dumps({"run_dir": str(run_dir), "runs": runs, "not_run": missing, **searched}, indent=2))


def print_search(run_dir: Path, records: list[RunRecord] | None = None, stderr: bool = False) -> None:
    """A searched run's table (untuned and tuned settings and accuracies, trials, compute) and a
    warning when strategies' budgets differ; nothing for a run without a search. `records`, the
    final runs (their test accuracy), are read from `run_dir` when not given; `stderr` as the
    summary's table (with --json)."""
    from vptbench.reporting.console import search_table
    from vptbench.reporting.search import budgets_sentence, search_rows, shown_columns
    from vptbench.results.search import load_summary

    summary = load_summary(run_dir)
    if summary is None:
        return
    if records is None:
        from vptbench.results.rundir import load_run_dir

        records = load_run_dir(run_dir)[1]
    out = table_console(stderr=stderr)
    rows = search_rows(summary, records)
    out.print(search_table([{column: row[column] for column in shown_columns(rows)} for row in rows], "Search: trials scored on validation, the tuned settings' final runs tested", out.width))
    if budgets := budgets_sentence(summary):
        console.print(f"[yellow]{escape(budgets)}[/]", soft_wrap=True)


def finish(records: list[RunRecord], plan: list[str], suite: str, run_dir: Path, as_json: bool) -> None:
    """The summary, each run that did not finish ok, notes on the data, and the verdict; exit 1
    when a run failed."""
    from vptbench.reporting.markdown import untrained_note

    print_summary(records, plan, suite, run_dir, as_json)
    failures = sum(r.status != Status.ok for r in records)
    for record in records:
        if record.status != Status.ok:
            console.print(f"[red]{record.experiment} seed {record.seed} {record.status}[/]: {escape(record.error or 'no message')}", soft_wrap=True)
        if untrained := untrained_note(record):
            console.print(f"[yellow]{record.experiment} seed {record.seed}[/]: {escape(untrained)}", soft_wrap=True)
    print_dataset_notes(records)
    runs = len(records)
    verdict = f"[red]{failures} of {count(runs, 'run')} did not finish ok[/]" if failures else ("the run finished ok" if runs == 1 else f"all {runs} runs ok")
    console.print(f"{verdict}; reports in [bold]{escape(str(run_dir))}[/] (report.md with plots, results.csv, summary.csv, report.json)", soft_wrap=True)
    if failures:
        raise typer.Exit(ExitCode.RUN_FAILED)


def print_damaged(manifest: RunManifest, run_dirs: list[Path], outcome: str) -> None:
    """Records left out of the directories read now, and what happens next; those a copy's sources
    had are in its report.md, not news."""
    for damage in manifest.damaged_records:
        if any(Path(damage.path).is_relative_to(run_dir) for run_dir in run_dirs):
            console.print(f"[yellow]damaged record[/]: {escape(damage.path)} ({escape(damage.problem)}): left out{outcome}", soft_wrap=True)


def print_dataset_notes(records: list[RunRecord]) -> None:
    """What the report says of the test split, once: every run of a suite shares it."""
    from vptbench.reporting.markdown import absent_classes_note

    for note in dict.fromkeys(filter(None, map(absent_classes_note, records))):
        console.print(f"[yellow]{escape(note)}[/]", soft_wrap=True)


def print_load_warnings(model_name: str, warnings: list[str]) -> None:
    """What the libraries warned of while loading the model, each once: quieted libraries would
    otherwise swallow it (a config whose special tokens do not match its tokenizer, say)."""
    for message in warnings:
        console.print(f"[yellow]warning[/]: models.{model_name}: {escape(message)}", soft_wrap=True)
