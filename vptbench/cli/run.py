"""`vptbench run`: plan a suite (or a resume), check what needs no model, load once, run, summarise."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vptbench.cli.options import RESULTS, ConfigOption, SuiteOption, count
from vptbench.cli.render import finish, print_damaged, print_load_warnings, print_summary
from vptbench.errors import ExitCode, Interrupted, UsageError, WriteError, unknown_name
from vptbench.results.records import RunRecord
from vptbench.terminal import console, reports_errors, table_console

EXECUTORS = ("process", "inline", "ray")


@reports_errors
def run(
    ids: Annotated[list[str] | None, typer.Argument(help="Experiment ids to run (e.g. E1 E2).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every experiment of the suite.")] = False,
    suite: SuiteOption = None,
    config: ConfigOption = None,
    seeds: Annotated[str | None, typer.Option(help="Seeds, e.g. 0,1,2 or 0-4 (default: the suite's).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override every experiment's epochs.")] = None,
    compile_model: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile every experiment's model, or none (default: each experiment's setting).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder that receives the run directory.", show_default="results")] = None,
    resume: Annotated[Path | None, typer.Option(help="Finish an interrupted run directory: keep its finished runs, rerun the rest.")] = None,
    feature_cache: Annotated[Path | None, typer.Option(help="Folder that keeps frozen-encoder features across runs (keyed by a hash of weights, model settings, data and precision).")] = None,
    executor: Annotated[str, typer.Option(envvar="VPTBENCH_EXECUTOR", help="process (each run in a child process: a crash or hang costs that run alone), inline (in this process, for debugging) or ray (one task per experiment and seed).")] = "process",
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Seconds each run may take before it is stopped and recorded as timeout (default: each experiment's setting; enforced by the process executor).", show_default=False)] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="With --resume: record these experiments' unfinished runs as skipped instead of running them.", show_default=False)] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (e.g. auto, ray://host:10001); default: start a local Ray instance.")] = None,
    retry_oom: Annotated[bool, typer.Option("--retry-oom", help="On CUDA out-of-memory, retry with gradient accumulation at the same effective batch.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Use this declared model instead of the suite's (e.g. vit-b16-random).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Use this declared dataset instead of the suite's (e.g. brain-mri-synthetic).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Build each experiment's model and count parameters; no data, no training.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (CI logs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Train and evaluate experiments, then print a summary and write reports."""
    from vptbench.cli.libraries import quiet_libraries
    from vptbench.harness.planning import plan_for_resume, plan_from_registry
    from vptbench.harness.preflight import check_folders, check_runnable
    from vptbench.registry.seeds import parse_seeds

    if executor not in EXECUTORS:
        raise UsageError(f"--executor (or VPTBENCH_EXECUTOR): '{executor}' is not one of {', '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise UsageError("--address goes with --executor ray")
    if timeout is not None and (executor != "process" or not math.isfinite(timeout)):
        raise UsageError(f"--timeout: {timeout:g} is not a finite number of seconds" if executor == "process" else f"--timeout needs --executor process (the {executor} executor enforces no time limit)")
    if not dry_run:  # before the strategies are imported: seconds, not a minute, to say a folder is wrong
        check_folders(None if resume else output or RESULTS, feature_cache, resume)
    finished: list[RunRecord] = []
    if resume:
        selection = {"experiment ids": ids, "--all": all_, "--suite": suite, "--config": config, "--seeds": seeds, "--epochs": epochs, "--compile/--no-compile": compile_model is not None, "--model": model, "--dataset": dataset}
        if given := [name for name, value in selection.items() if value]:
            raise UsageError(f"--resume takes the run directory's own configuration; drop {', '.join(given)}")
        if output:
            raise UsageError(f"--resume writes into '{resume}' itself; drop --output")
        with _busy("reading the run directory and importing its strategies", quiet):
            plan, manifest, finished = plan_for_resume(resume, {"timeout": timeout} if timeout else None)
        print_damaged(manifest, [resume], "; a planned run without its record runs again")
        for experiment_id in skip or []:
            if experiment_id not in {p.id for p in plan.experiments}:
                raise UsageError(f"--skip: '{resume}' ran suite '{plan.suite}': " + unknown_name("experiment", experiment_id, [p.id for p in plan.experiments]))
    elif skip:
        raise UsageError("--skip goes with --resume: to leave an experiment out of a new run, do not name it")
    else:
        if not ids and not all_:
            raise UsageError("name experiment ids to run (e.g. `vptbench run E1 E2`) or pass --all")
        if ids and all_:
            raise UsageError("pass either experiment ids or --all, not both")
        seed_list = parse_seeds(seeds) if seeds is not None else None
        overrides = {**({"epochs": epochs} if epochs else {}), **({"compile": compile_model} if compile_model is not None else {}), **({"timeout": timeout} if timeout else {})}
        with _busy("checking the suite and importing its strategies", quiet):
            plan = plan_from_registry(config, suite, ids, seed_list, overrides, model, dataset)
    if not dry_run:
        check_runnable(plan)
    quiet_libraries()
    from vptbench.harness.device import resolve_device

    resolve_device(device)  # a bad device is refused with --dry-run too
    if dry_run:
        return _dry_run(plan, as_json)
    runner = _make_executor(executor, address, device)
    try:
        result = _execute(plan, device, resume or output or RESULTS, bool(resume), quiet, finished, retry_oom, feature_cache, runner, frozenset(skip or []))
    except Interrupted as stop:  # what finished before the stop, as a finished suite shows it
        from vptbench.results.rundir import load_run_dir

        print_summary(load_run_dir(stop.run_dir)[1], plan.keys(), plan.suite, stop.run_dir, as_json)
        raise
    finish(result.records, plan.keys(), plan.suite, result.run_dir, as_json)


def _busy(doing: str, quiet: bool):
    """A spinner on a terminal while imports take seconds (torch's first of all); nothing in a log."""
    return console.status(doing) if console.is_terminal and not quiet else contextlib.nullcontext()


def _make_executor(name: str, address: str | None, device: str):
    from vptbench.harness.executors import InlineExecutor, RayExecutor
    from vptbench.harness.isolation import ProcessExecutor

    if name == "ray":
        return RayExecutor(address, device)
    return ProcessExecutor() if name == "process" else InlineExecutor()


def _execute(plan, device: str, target: Path, resuming: bool, quiet: bool, finished, retry_oom: bool, feature_cache: Path | None, runner, skip: frozenset[str]):
    """Load once, then run; progress bars unless quiet."""
    total = len(plan.experiments) * len(plan.seeds)
    kept = sum(r.status.finished for r in finished)
    if not quiet:  # said before the imports below take their seconds
        resumed = f"; resuming: {count(kept, 'finished run')} kept, {total - kept} to run" if resuming else ""
        console.print(f"Suite [bold]{plan.suite}[/]: {count(len(plan.experiments), 'experiment')} × {count(len(plan.seeds), 'seed')} ({plan.config_path}){resumed}", soft_wrap=True)
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.suite import run_suite
    from vptbench.harness.workbench import prepare
    from vptbench.progress import RichObserver
    from vptbench.reporting.sink import ReportSink
    from vptbench.results.rundir import new_run_dir

    observer = QuietObserver() if quiet else RichObserver(console, total, kept)
    with observer:
        bench = prepare(plan, device, observer.progress, feature_cache, data_on_device=runner.runs_here)
        print_load_warnings(plan.model_name, bench.model.warnings)
        run_dir = target if resuming else new_run_dir(target, plan.suite)
        try:
            return run_suite(plan, bench, run_dir, observer, ReportSink(run_dir), finished, retry_oom, runner, skip)
        except KeyboardInterrupt:
            raise Interrupted(run_dir) from None
        except WriteError as exc:  # a full disk, say: what was written stays, as after a stop
            raise WriteError(f"{exc}; the runs finished before it are kept in '{run_dir}': make room, then `vptbench run --resume {run_dir}`") from exc


def _dry_run(plan, as_json: bool) -> None:
    from vptbench.cli.searching import add_search, dry_run_lines
    from vptbench.harness.dry_run import dry_run
    from vptbench.reporting.console import make_table

    rows = dry_run(plan)
    add_search(rows, plan.experiments)
    failed = any(row["status"] != "ok" for row in rows)
    if as_json:  # an object, as every other --json prints
        typer.echo(json.dumps({"suite": plan.suite, "seeds": plan.seeds, "experiments": rows}, indent=2))
        if failed:
            raise typer.Exit(ExitCode.RUN_FAILED)
        return
    columns = ("Experiment", "Tuner", "Trainable", "Total", "Trainable %", "Reference")
    table = make_table(f"Suite '{plan.suite}' — parameters (dry run, nothing trained)", columns)
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["experiment"], row["tuner"], "[red]failed[/]", "", "", "")
            continue
        reference = f"{row['ref_trainable_params']:,}" if row["ref_trainable_params"] is not None else "–"
        share = 100 * row["trainable_params"] / row["total_params"]
        table.add_row(row["experiment"], row["tuner"], f"{row['trainable_params']:,}", f"{row['total_params']:,}", f"{share:.4f} %", reference)
    seeds = plan.seeds if len(plan.seeds) <= 6 else [*plan.seeds[:3], "…", plan.seeds[-1]]
    out = table_console()
    out.print(table)
    out.print(f"Each experiment would run with {count(len(plan.seeds), 'seed')}: {', '.join(map(str, seeds))}", soft_wrap=True, highlight=False)
    if lines := dry_run_lines(rows, plan.experiments, plan.seeds):  # a searched suite: its trials first
        out.print("Searched on validation first (trials × epochs at most: pruning only lowers it):", highlight=False)
        for line in lines:
            out.print(escape(line), soft_wrap=True, highlight=False)
    for row in rows:
        if row["status"] != "ok":
            console.print(f"[red]{row['experiment']} failed[/]: {escape(row['error'])}", soft_wrap=True)
    if failed:
        raise typer.Exit(ExitCode.RUN_FAILED)
