"""The `vptbench` command. Commands stay thin and import torch only when they need it."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, get_args

import typer

from vptbench.errors import PluginError, UsageError
from vptbench.terminal import DEBUG, OneLineErrors, console, reports_errors, table_console

app = typer.Typer(
    cls=OneLineErrors,
    help="Compare ways of adapting CLIP to an image-classification task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Registry TOML (default: ./benchmark.toml, else the packaged one).")]
SuiteOption = Annotated[str | None, typer.Option("--suite", "-s", help="Suite to use (default: the registry's default_suite).")]
RESULTS = Path("results")  # where run directories go unless --output says otherwise


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vptbench {version('vptbench')}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    DEBUG["on"] = debug


@app.command("list")
@reports_errors
def list_command(
    config: ConfigOption = None,
    suite: SuiteOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """List installed tuners (with load status) and the suite's experiments, each checked: invalid
    params exit 2; a broken plugin's experiments show as broken, as `run` records them failed."""
    from vptbench import plugins
    from vptbench.harness.suite import check_experiments, invalid_experiments, select_suite
    from vptbench.registry import load_registry

    registry, config_path = load_registry(config)
    suite_name, chosen = select_suite(registry, suite)
    tuners = []
    for name, plugin in plugins.find_plugins().items():
        status = plugins.load(plugin)
        tuners.append(
            {"name": name, "distribution": plugin.distribution, "version": plugin.version, "status": "ok" if status.ok else "broken", "error": status.error}
        )
    for plugin in plugins.ignored_plugins():
        tuners.append({"name": plugin.name, "distribution": plugin.distribution, "version": plugin.version, "status": "ignored", "error": plugin.conflict})
    suites = [
        {"name": name, "default": name == registry.default_suite, "model": s.model, "dataset": s.dataset, "experiments": list(s.experiments), "description": s.description}
        for name, s in registry.suites.items()
    ]
    experiments = check_experiments(suite_name, chosen, config_path)
    invalid = [e for e in experiments if e["status"] == "invalid"]
    if as_json:
        typer.echo(json.dumps({"tuners": tuners, "suites": suites, "suite": suite_name, "experiments": experiments}, indent=2))
    else:
        from vptbench.reporting.console import make_table

        out = table_console()
        table = make_table("Tuners (entry-point group vptbench.tuners)", ("Name", "Distribution", "Version", "Status"))
        for t in tuners:
            status = {"ok": "ok", "broken": f"[red]broken[/]: {t['error']}"}.get(t["status"], f"[yellow]{t['error']}[/]")
            table.add_row(t["name"], t["distribution"], t["version"], status)
        out.print(table)
        table = make_table(f"Suites in {config_path} (--suite NAME lists another's experiments)", ("Suite", "Model", "Dataset", "Experiments", "Description"))
        for entry in suites:
            name = entry["name"] + (" (default)" if entry["default"] else "")
            table.add_row(f"[bold]{name}[/]" if entry["name"] == suite_name else name, entry["model"], entry["dataset"], ", ".join(entry["experiments"]), entry["description"])
        out.print(table)
        columns = ("Experiment", "Tuner", "Params", "Description", "Status")
        about = f": {chosen.description}" if chosen.description else ""
        table = make_table(f"Suite '{suite_name}' ({chosen.model} on {chosen.dataset}){about}", columns)
        for e in experiments:
            status = "ok" if e["status"] == "ok" else f"[red]{e['status']}[/]"
            table.add_row(e["id"], e["tuner"], json.dumps(e["params"]) if e["params"] else "", e["description"], status)
        out.print(table)
    if invalid:
        raise invalid_experiments(config_path, [e["error"] for e in invalid])


@app.command()
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
    executor: Annotated[str, typer.Option(help="local (this process) or ray (one task per experiment and seed).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (e.g. auto, ray://host:10001); default: start a local Ray instance.")] = None,
    retry_oom: Annotated[bool, typer.Option("--retry-oom", help="On CUDA out-of-memory, retry with gradient accumulation at the same effective batch.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Use this declared model instead of the suite's (e.g. vit-b16-random).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Use this declared dataset instead of the suite's (e.g. brain-mri-synthetic).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Build each experiment's model and count parameters; no data, no training.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (CI logs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Train and evaluate experiments, then print a summary and write reports."""
    from vptbench.errors import Interrupted
    from vptbench.harness.device import resolve_device
    from vptbench.harness.suite import plan_from_run_dir
    from vptbench.results import RunLock, folder_problem, load_run_dir

    finished: list[dict] = []
    if resume:
        selection = {"experiment ids": ids, "--all": all_, "--suite": suite, "--config": config, "--seeds": seeds, "--epochs": epochs, "--compile/--no-compile": compile_model is not None, "--model": model, "--dataset": dataset}
        given = [name for name, value in selection.items() if value]
        if given:
            raise UsageError(f"--resume takes the run directory's own configuration; drop {', '.join(given)}")
        if output:
            raise UsageError(f"--resume writes into '{resume}' itself; drop --output")
        meta, finished = load_run_dir(resume)
        if meta.get("status") == "combined":
            sources = meta.get("sources", [])
            what = f"combines the reports of {', '.join(sources)}; resume one of those" if len(sources) > 1 else f"is a copy of {sources[0]}'s report; resume that"
            raise UsageError(f"--resume: '{resume}' {what}")
        _print_damaged(meta, [resume], "; a planned run without its record runs again")
        plan = plan_from_run_dir(meta)
    else:
        plan = _plan_from_registry(ids, all_, suite, config, seeds, epochs, compile_model, model, dataset)
    _quiet_libraries()
    resolve_device(device)  # a bad device, executor or address is refused with --dry-run too
    if executor not in ("local", "ray"):
        raise UsageError(f"--executor: '{executor}' is not one of local, ray")
    if address and executor != "ray":
        raise UsageError("--address goes with --executor ray")
    if dry_run:
        return _dry_run(plan, as_json)
    unusable = [p for p in plan.experiments if p.error]
    if unusable and len(unusable) == len(plan.experiments):  # nothing could run: fail before loading anything
        more = f" (+{len(unusable) - 1} more)" if len(unusable) > 1 else ""
        raise PluginError(f"no selected experiment can run; {unusable[0].id}: {unusable[0].error}{more}")
    # an unwritable folder or a busy run fails before anything loads
    output = output or RESULTS
    for what, folder in (("--output: cannot write results to", None if resume else output), ("--feature-cache: cannot write to", feature_cache)):
        if folder is not None and (problem := folder_problem(folder)):
            raise UsageError(f"{what} '{folder}': {problem}")
    if resume:
        RunLock(resume).check_free()
    runner = _make_executor(executor, address, device)
    try:
        result = _execute(plan, device, resume or output, bool(resume), quiet, finished, retry_oom, feature_cache, runner)
    except Interrupted as stop:  # what finished before the stop, as a finished suite shows it
        _print_summary(load_run_dir(stop.run_dir)[1], plan, stop.run_dir, as_json)
        raise
    _finish(result, plan, as_json)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _plan_from_registry(ids, all_, suite, config, seeds, epochs, compile_model, model, dataset):
    from vptbench.harness.suite import plan_experiments, select_suite, suite_plan
    from vptbench.registry import load_registry

    if not ids and not all_:
        raise UsageError("name experiment ids to run (e.g. `vptbench run E1 E2`) or pass --all")
    if ids and all_:
        raise UsageError("pass either experiment ids or --all, not both")
    registry, config_path = load_registry(config)
    suite_name, chosen = select_suite(registry, suite, model, dataset)
    seed_list = parse_seeds(seeds) if seeds is not None else list(chosen.training.seeds)
    overrides = {"epochs": epochs} if epochs else {}
    if compile_model is not None:
        overrides["compile"] = compile_model
    experiments = plan_experiments(suite_name, chosen, config_path, ids or list(chosen.experiments), overrides)
    return suite_plan(registry, config_path, suite_name, experiments, seed_list)


def _make_executor(name: str, address: str | None, device: str):
    from vptbench.harness.executors import LocalExecutor, RayExecutor

    return RayExecutor(address, device) if name == "ray" else LocalExecutor()


def _execute(plan, device: str, target: Path, resuming: bool, quiet: bool, finished: list[dict], retry_oom: bool, feature_cache: Path | None, runner):
    """Load once, then run; progress bars unless quiet."""
    from vptbench.errors import Interrupted
    from vptbench.harness.runner import QuietObserver
    from vptbench.harness.suite import FINISHED_STATUSES, prepare, run_suite
    from vptbench.progress import RichObserver
    from vptbench.results import new_run_dir

    total = len(plan.experiments) * len(plan.seeds)
    kept = sum(r["status"] in FINISHED_STATUSES for r in finished)
    if not quiet:
        resumed = f"; resuming: {_count(kept, 'finished run')} kept, {total - kept} to run" if resuming else ""
        console.print(f"Suite [bold]{plan.suite}[/]: {_count(len(plan.experiments), 'experiment')} × {_count(len(plan.seeds), 'seed')} ({plan.config_path}){resumed}", soft_wrap=True)
    observer = QuietObserver() if quiet else RichObserver(console, total, kept)
    with observer:
        bench = prepare(plan, device, observer.progress, feature_cache, data_on_device=runner.runs_here)
        run_dir = target if resuming else new_run_dir(target, plan.suite)
        try:
            return run_suite(plan, bench, run_dir, observer, finished, retry_oom, runner)
        except KeyboardInterrupt:
            raise Interrupted(run_dir) from None


def _dry_run(plan, as_json: bool) -> None:
    from rich.markup import escape

    from vptbench.harness.suite import dry_run
    from vptbench.reporting.console import make_table

    suite_name = plan.suite
    rows = dry_run(plan)
    failed = any(row["status"] != "ok" for row in rows)
    if as_json:  # an object, as every other --json prints
        typer.echo(json.dumps({"suite": suite_name, "seeds": plan.seeds, "experiments": rows}, indent=2))
        if failed:
            raise typer.Exit(1)
        return
    columns = ("Experiment", "Tuner", "Trainable", "Total", "Trainable %", "Reference")
    table = make_table(f"Suite '{suite_name}' — parameters (dry run, nothing trained)", columns)
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
    out.print(f"Each experiment would run with {_count(len(plan.seeds), 'seed')}: {', '.join(map(str, seeds))}", soft_wrap=True, highlight=False)
    for row in rows:
        if row["status"] != "ok":
            console.print(f"[red]{row['experiment']} failed[/]: {escape(row['error'])}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _print_summary(records: list[dict], plan, run_dir: Path, as_json: bool) -> None:
    """The runs' table (on stderr when stdout carries JSON), and with --json their JSON summary."""
    from vptbench.reporting.console import summary_table

    out = table_console(stderr=as_json)
    out.print(summary_table(records, plan.keys(), f"Suite '{plan.suite}' — {run_dir}", out.width))
    if as_json:
        keep = ("experiment", "tuner", "seed", "status", "error", "trainable_params", "val_accuracy", "test_accuracy", "test_macro_f1", "epochs_to_converge", "train_seconds")
        typer.echo(json.dumps({"run_dir": str(run_dir), "runs": [{k: r.get(k) for k in keep} for r in records]}, indent=2))


def _finish(result, plan, as_json: bool) -> None:
    from rich.markup import escape

    from vptbench.reporting.markdown import untrained_note

    _print_summary(result.records, plan, result.run_dir, as_json)
    failures = result.failures
    for record in result.records:
        if record["status"] != "ok":
            console.print(f"[red]{record['experiment']} seed {record['seed']} {record['status']}[/]: {escape(record.get('error') or 'no message')}", soft_wrap=True)
        if untrained := untrained_note(record):
            console.print(f"[yellow]{record['experiment']} seed {record['seed']}[/]: {escape(untrained)}", soft_wrap=True)
    _print_dataset_notes(result.records)
    runs = len(result.records)
    verdict = f"[red]{failures} of {_count(runs, 'run')} did not finish ok[/]" if failures else ("the run finished ok" if runs == 1 else f"all {runs} runs ok")
    console.print(f"{verdict}; reports in [bold]{escape(str(result.run_dir))}[/] (report.md with plots, results.csv, summary.csv, report.json)", soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def _print_damaged(meta: dict, run_dirs: list[Path], outcome: str) -> None:
    """Records left out of the directories read now, and what happens next; those a copy's sources
    had are in its report.md, not news."""
    from rich.markup import escape

    for damage in meta["damaged_records"]:
        if any(Path(damage["path"]).is_relative_to(run_dir) for run_dir in run_dirs):
            console.print(f"[yellow]damaged record[/]: {escape(damage['path'])} ({escape(damage['problem'])}): left out{outcome}", soft_wrap=True)


def _print_dataset_notes(records: list[dict]) -> None:
    """What the report says of the test split, once: every run of a suite shares it."""
    from rich.markup import escape

    from vptbench.reporting.markdown import absent_classes_note

    for note in dict.fromkeys(filter(None, map(absent_classes_note, records))):
        console.print(f"[yellow]{escape(note)}[/]", soft_wrap=True)


@app.command()
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
    from rich.markup import escape

    from vptbench.reporting import FORMATS, write_reports
    from vptbench.reporting.console import summary_table
    from vptbench.results import (
        RunLock,
        combine_run_dirs,
        copy_run_records,
        latest_run_dir,
        load_run_dir,
        missing_runs,
        new_run_dir,
    )

    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")
    run_dirs = run_dirs or [latest_run_dir(output or RESULTS)]
    if len(run_dirs) == 1 and (output is None or output.resolve() in (run_dirs[0].resolve(), run_dirs[0].resolve().parent)):
        target = run_dirs[0]  # rewritten in place
        meta, records = load_run_dir(target)
    else:
        for run_dir in run_dirs:  # a half-written run would be copied as if it were finished
            RunLock(run_dir).check_free()
            if output and output.resolve().is_relative_to(run_dir.resolve()):
                raise UsageError(f"--output: '{output}' is inside the run directory '{run_dir}'; a copy of its report goes elsewhere")
        meta, records = combine_run_dirs(run_dirs)
        target = new_run_dir(output or RESULTS, f"{meta['suite']}-{'combined' if len(run_dirs) > 1 else 'report'}")
        copy_run_records(target, meta, records)
    _print_damaged(meta, run_dirs, "")
    with RunLock(target):  # never rewrite the reports of a run still writing them
        if meta.get("status") == "running":  # yet its lock was free: its process was killed or crashed
            meta = {**meta, "status": "interrupted"}
        written = write_reports(target, meta, records, (fmt,) if fmt else FORMATS)
    out = table_console()
    out.print(summary_table(records, meta["plan"], f"Suite '{meta['suite']}' — {target}", out.width))
    _print_dataset_notes(records)
    if missing := missing_runs(meta, records):
        console.print(f"[yellow]{escape(missing)}[/]", soft_wrap=True)
    for overlap in meta.get("overlapping_runs", []):
        places = ", ".join(overlap["in"][:-1]) + f" and {overlap['in'][-1]}"
        console.print(escape(f"{overlap['run']} is in {places}: the one in {overlap['reported']} is reported"), soft_wrap=True)
    console.print(escape(f"wrote {_count(len(written), 'file')} in {target}: " + ", ".join(p.name for p in written)), soft_wrap=True)


def _positive(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value:g} is not a positive, finite number")
    return value


@app.command()
@reports_errors
def bench(
    ids: Annotated[list[str] | None, typer.Argument(help="Experiment ids (default: all of the suite).", show_default=False)] = None,
    suite: Annotated[str | None, typer.Option("--suite", "-s", help="Suite whose experiments to time (default: `paper` when the registry has it, else its default suite).", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Declared model to time (default, whatever the suite: the built-in ViT-B/16 geometry with random weights).", show_default=False)] = None,
    config: ConfigOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Synthetic batch size.")] = 32,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per strategy.")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps first.")] = 3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on CUDA, fp16 before Ampere, else fp32), fp32, bf16 or fp16.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile each model first.")] = False,
    peak_tflops: Annotated[float | None, typer.Option(callback=_positive, help="Device peak for MFU when it is not in the built-in table.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON on stdout.")] = False,
) -> None:
    """Time each strategy's training step (or frozen forward) on a synthetic batch."""
    from rich.markup import escape

    from vptbench.harness.device import describe, use_device
    from vptbench.harness.suite import plan_experiments, select_suite, task_for
    from vptbench.models import load_model
    from vptbench.registry import ModelSpec, PrecisionName, load_registry
    from vptbench.reporting.console import throughput_table

    if precision not in get_args(PrecisionName):
        raise UsageError(f"--precision: '{precision}' is not one of {', '.join(get_args(PrecisionName))}")
    registry, config_path = load_registry(config)
    suite_name, chosen = select_suite(registry, suite or ("paper" if "paper" in registry.suites else None), model)
    plans = [p for p in plan_experiments(suite_name, chosen, config_path, ids or list(chosen.experiments)) if p.tuner]
    target = use_device(device)
    if precision == "fp16" and target.type == "cpu":
        console.print("[yellow]note[/]: fp16 on a CPU runs slow emulated kernels; the figures say little about a GPU")
    _quiet_libraries()
    model = model or "vit-b16-random"  # built in: no registry needs to declare it
    loaded = load_model(model, registry.models.get(model, ModelSpec(source="builtin", id=model)))
    task = task_for(registry.datasets[chosen.dataset], loaded)
    rows = _timed_rows(plans, loaded.clip, task, target, batch_size, steps, warmup, precision, compile_model, peak_tflops)
    failed = [r for r in rows if "error" in r]
    if as_json:
        typer.echo(json.dumps({"device": describe(target), "model": model, "rows": rows}, indent=2))
        if failed:
            raise typer.Exit(1)
        return
    peaks = sorted({r["peak_tflops"] for r in rows if r.get("peak_tflops")})
    out = table_console()
    precision = next((r["precision"] for r in rows if "precision" in r), precision)  # "auto" as resolved
    title = f"Throughput on {describe(target)} — {model}, batch {batch_size}, {precision}"
    out.print(throughput_table(rows, title, out.width, " / ".join(f"{p:g}" for p in peaks) or None))
    if failed:
        for row in failed:
            console.print(escape(f"{row['experiment']} ({row['tuner']}): {row['error']}"), style="red", soft_wrap=True)
        console.print(f"[red]{len(failed)} of {len(rows)} strategies could not be timed[/]")
        raise typer.Exit(1)


def _timed_rows(plans, clip, task, target, batch_size: int, steps: int, warmup: int, precision: str, compile_model: bool, peak_tflops: float | None) -> list[dict]:
    """Each strategy's row, with a bar per strategy's steps (a line per strategy in a log)."""
    from functools import partial

    from vptbench.harness.throughput import measure_row
    from vptbench.progress import bars, log_line

    rows = []
    with bars(console) as progress:
        overall = progress.add_task("strategies", total=len(plans))
        for plan in plans:
            steps_bar = progress.add_task(f"  timing {plan.id} ({plan.spec.tuner})", total=1 + warmup + steps)
            timed = measure_row(plan, clip, task, target, batch_size, steps, warmup, precision, compile_model, peak_tflops, on_step=partial(progress.advance, steps_bar))
            rows.append(timed)
            progress.remove_task(steps_bar)
            progress.advance(overall)
            if progress.disable:
                outcome = f"failed: {timed['error']}" if "error" in timed else f"{timed['images_per_second']:,.1f} images/s"
                log_line(console, f"[{len(rows)}/{len(plans)}] {plan.id} ({plan.spec.tuner}): {outcome}")
    return rows


MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """`0,1,2`, `0-4` or a mix; seeds are unique, in 0..2**32-1, and at most MAX_SEEDS of them."""
    import re

    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise UsageError("--seeds: name at least one seed, e.g. 0,1,2 or 0-4")
    if not all(parts):
        raise UsageError(f"--seeds: '{text}' has an empty part between commas")
    seeds: list[int] = []
    for part in parts:
        if not (match := re.fullmatch(r"([0-9]+)(?:\s*-\s*([0-9]+))?", part)):
            where = f" in '{text}'" if part != text.strip() else ""
            raise UsageError(f"--seeds: '{part}'{where} is not a seed like 3 or a range like 0-4")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise UsageError(f"--seeds: the range '{part}' runs backwards; write {last}-{first}")
        if last - first >= MAX_SEEDS - len(seeds):
            raise UsageError(f"--seeds: '{text}' asks for more than {MAX_SEEDS} seeds")
        seeds += range(first, last + 1)
    if max(seeds) >= 2**32:
        raise UsageError(f"--seeds: '{text}' must name seeds from 0 to {2**32 - 1}")
    if len(set(seeds)) < len(seeds):
        again = next(seed for i, seed in enumerate(seeds) if seed in seeds[:i])
        raise UsageError(f"--seeds: seed {again} is named twice in '{text}'")
    return seeds


# torch's two wordings, matched from the start of the message
NONDETERMINISTIC_WARNING = r".*(defaults to a non-deterministic algorithm|does not have a deterministic implementation)"


def _quiet_libraries() -> None:
    """Our own bars and errors replace the libraries' download bars and warnings. `datasets` is
    quieted through its environment when it is not loaded yet: built-in data never imports it."""
    import os
    import warnings

    import transformers
    from huggingface_hub.utils import logging as hub_logging

    # CUDA's kernels without a deterministic version: the report says so once (markdown.CUDA_NOTE)
    warnings.filterwarnings("ignore", message=NONDETERMINISTIC_WARNING, category=UserWarning)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    hub_logging.set_verbosity_error()  # its retry warnings would precede our one-line error
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
        sys.modules["datasets"].logging.set_verbosity_error()
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
