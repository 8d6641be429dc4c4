"""The `vptbench` command. Commands stay thin and import torch only when they need it."""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from vptbench.errors import UsageError, VptbenchError

app = typer.Typer(
    help="Compare ways of adapting CLIP to an image-classification task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
DEBUG = {"on": False}

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="Registry TOML (default: ./benchmark.toml, else the packaged one).")]
SuiteOption = Annotated[Optional[str], typer.Option("--suite", "-s", help="Suite to use (default: the registry's default_suite).")]


def reports_errors(command):
    """Turn every expected error into one red line and its exit code; tracebacks only with --debug."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VptbenchError as exc:
            if DEBUG["on"]:
                raise
            console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: finished runs are kept")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    DEBUG["on"] = debug


@app.command("list")
@reports_errors
def list_command(
    config: ConfigOption = None,
    suite: SuiteOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """List installed tuners (with load status) and the suite's experiments."""
    from vptbench import plugins
    from vptbench.harness.suite import select_suite
    from vptbench.registry import load_registry

    registry, _ = load_registry(config)
    suite_name, chosen = select_suite(registry, suite)
    tuners = []
    for name, plugin in plugins.find_plugins().items():
        status = plugins.load(plugin)
        tuners.append(
            {"name": name, "distribution": plugin.distribution, "version": plugin.version, "status": "ok" if status.ok else "broken", "error": status.error}
        )
    experiments = [
        {"id": eid, "tuner": e.tuner, "params": e.params, "description": e.description} for eid, e in chosen.experiments.items()
    ]
    if as_json:
        typer.echo(json.dumps({"tuners": tuners, "suite": suite_name, "experiments": experiments}, indent=2))
        return
    from vptbench.reporting.console import make_table

    out = Console()
    table = make_table("Tuners (entry-point group vptbench.tuners)", ("Name", "Distribution", "Version", "Status"))
    for t in tuners:
        table.add_row(t["name"], t["distribution"], t["version"], "ok" if t["status"] == "ok" else f"[red]broken[/]: {t['error']}")
    out.print(table)
    table = make_table(f"Suite '{suite_name}' ({chosen.model} on {chosen.dataset}): {chosen.description}", ("Experiment", "Tuner", "Params", "Description"))
    for e in experiments:
        table.add_row(e["id"], e["tuner"], json.dumps(e["params"]) if e["params"] else "", e["description"])
    out.print(table)


@app.command()
@reports_errors
def run(
    ids: Annotated[Optional[list[str]], typer.Argument(help="Experiment ids to run (e.g. E1 E2).", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every experiment of the suite.")] = False,
    suite: SuiteOption = None,
    config: ConfigOption = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. 0,1,2 or 0-4 (default: the suite's).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Override every experiment's epochs.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder that receives the run directory.")] = Path("results"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (CI logs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Use this declared model instead of the suite's (e.g. vit-b16-random).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Build each experiment's model and count parameters; no data, no training.")] = False,
) -> None:
    """Train and evaluate experiments, then print a summary and write reports."""
    from vptbench.harness.suite import plan_experiments, run_suite, select_suite
    from vptbench.registry import load_registry

    if not ids and not all_:
        raise UsageError("name experiment ids to run (e.g. `vptbench run E1 E2`) or pass --all")
    if ids and all_:
        raise UsageError("pass either experiment ids or --all, not both")
    registry, config_path = load_registry(config)
    suite_name, chosen = select_suite(registry, suite, model)
    seed_list = parse_seeds(seeds) if seeds else list(chosen.training.seeds)
    plans = plan_experiments(suite_name, chosen, config_path, ids or list(chosen.experiments), epochs)
    _quiet_libraries()
    if dry_run:
        return _dry_run(registry, suite_name, plans, as_json)

    from vptbench.harness.runner import QuietObserver
    from vptbench.progress import RichObserver

    total = len(plans) * len(seed_list)
    observer = QuietObserver() if quiet else RichObserver(console, total)
    if not quiet:
        console.print(f"Suite [bold]{suite_name}[/]: {len(plans)} experiments × {len(seed_list)} seeds from {config_path}")
    if isinstance(observer, RichObserver):
        with observer:
            result = run_suite(registry, config_path, suite_name, plans, seed_list, device, output, observer)
    else:
        result = run_suite(registry, config_path, suite_name, plans, seed_list, device, output, observer)
    _finish(result, suite_name, as_json)


def _dry_run(registry, suite_name: str, plans, as_json: bool) -> None:
    from vptbench.harness.suite import dry_run
    from vptbench.reporting.console import make_table

    rows = dry_run(registry, suite_name, plans)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ("Experiment", "Tuner", "Trainable", "Total", "Trainable %", "Reference")
    table = make_table(f"Suite '{suite_name}' — parameters (dry run, nothing trained)", columns)
    for row in rows:
        if row["status"] != "ok":
            table.add_row(row["experiment"], row["tuner"], f"[red]{row['error']}[/]", "", "", "")
            continue
        reference = f"{row['ref_trainable_params']:,}" if row["ref_trainable_params"] is not None else "–"
        share = 100 * row["trainable_params"] / row["total_params"]
        table.add_row(row["experiment"], row["tuner"], f"{row['trainable_params']:,}", f"{row['total_params']:,}", f"{share:.4f} %", reference)
    Console().print(table)
    if any(row["status"] != "ok" for row in rows):
        raise typer.Exit(1)


def _finish(result, suite_name: str, as_json: bool) -> None:
    from vptbench.reporting.console import summary_table

    Console(stderr=as_json).print(summary_table(result.records, f"Suite '{suite_name}' — {result.run_dir}"))
    if as_json:
        keep = ("experiment", "tuner", "seed", "status", "error", "trainable_params", "val_accuracy", "test_accuracy", "test_macro_f1", "epochs_to_converge", "train_seconds")
        typer.echo(json.dumps({"run_dir": str(result.run_dir), "runs": [{k: r.get(k) for k in keep} for r in result.records]}, indent=2))
    failures = result.failures
    verdict = f"[red]{failures} of {len(result.records)} runs did not finish ok[/]" if failures else f"all {len(result.records)} runs ok"
    console.print(f"{verdict}; reports in [bold]{result.run_dir}[/] (report.md, results.csv, summary.csv, run.json)")
    if failures:
        raise typer.Exit(1)


@app.command()
@reports_errors
def report(
    run_dir: Annotated[Optional[Path], typer.Argument(help="Run directory (default: the latest under --output).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="md, csv or json.")] = "md",
    output: Annotated[Path, typer.Option("--output", "-o", help="Where runs live, to find the latest.")] = Path("results"),
) -> None:
    """Regenerate reports from saved results, without retraining."""
    from vptbench.results import latest_run_dir, load_run_dir, write_json

    if fmt not in ("md", "csv", "json"):
        raise UsageError(f"--format: '{fmt}' is not one of md, csv, json")
    run_dir = run_dir or latest_run_dir(output)
    meta, records = load_run_dir(run_dir)
    from vptbench.reporting import REPORT_MD, RESULTS_CSV, SUMMARY_CSV, write_reports
    from vptbench.reporting.console import summary_table

    write_reports(run_dir, meta, records)
    if fmt == "json":
        write_json(run_dir / "report.json", {**meta, "runs": records})
        written = [run_dir / "report.json"]
    else:
        written = [run_dir / REPORT_MD] if fmt == "md" else [run_dir / RESULTS_CSV, run_dir / SUMMARY_CSV]
    Console().print(summary_table(records, f"Suite '{meta['suite']}' — {run_dir}"))
    console.print("wrote " + ", ".join(str(p) for p in written))


def parse_seeds(text: str) -> list[int]:
    """`0,1,2`, `0-4` or a mix; seeds are non-negative and unique."""
    seeds: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, _, high = part.partition("-")
            seeds += range(int(low), int(high) + 1) if high else [int(low)]
    except ValueError:
        raise UsageError(f"--seeds: '{text}' is not a list like 0,1,2 or a range like 0-4") from None
    if not seeds or min(seeds) < 0:
        raise UsageError(f"--seeds: '{text}' must name non-negative seeds")
    return list(dict.fromkeys(seeds))


def _quiet_libraries() -> None:
    """Our own bars and errors replace the libraries' download bars and warnings."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
