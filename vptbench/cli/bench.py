"""`vptbench bench`: each strategy's training step (or frozen forward) timed on a synthetic batch."""

from __future__ import annotations

import json
import math
from typing import Annotated, get_args

import typer
from rich.markup import escape

from vptbench.cli.options import ConfigOption
from vptbench.cli.render import print_load_warnings
from vptbench.errors import ExitCode, UsageError, unknown_name
from vptbench.terminal import console, reports_errors, table_console

DEFAULT_MODEL = "vit-b16-random"  # built in: no registry needs to declare it


def _positive(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value:g} is not a positive, finite number")
    return value


@reports_errors
def bench(
    ids: Annotated[list[str] | None, typer.Argument(help="Experiment ids (default: all of the suite).", show_default=False)] = None,
    suite: Annotated[str | None, typer.Option("--suite", "-s", help="Suite whose experiments to time (default: `paper` when the registry has it, else its default suite).", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Declared or built-in model to time (default, whatever the suite: the built-in ViT-B/16 geometry with random weights).", show_default=False)] = None,
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
    from vptbench.cli.libraries import quiet_libraries
    from vptbench.harness.planning import plan_experiments, select_suite
    from vptbench.registry import PrecisionName, load_registry

    if precision not in get_args(PrecisionName):
        raise UsageError(f"--precision: '{precision}' is not one of {', '.join(get_args(PrecisionName))}")
    registry, config_path = load_registry(config)
    suite_name, chosen = select_suite(registry, suite or ("paper" if "paper" in registry.suites else None))
    model = model or DEFAULT_MODEL
    from vptbench.progress import log_line  # rich only: said before torch and the model load

    chosen_ids = list(dict.fromkeys(ids or chosen.experiments))
    log_line(console, f"loading {model} to time {len(chosen_ids)} strateg{'y' if len(chosen_ids) == 1 else 'ies'} of suite '{suite_name}'")
    spec = registry.models.get(model) or _builtin_spec(model, registry.models)
    plans = [p for p in plan_experiments(suite_name, chosen, config_path, chosen_ids) if p.tuner]
    quiet_libraries()
    from vptbench.harness.device import describe, use_device
    from vptbench.harness.workbench import task_for
    from vptbench.models import load_model
    from vptbench.reporting.console import throughput_table

    target = use_device(device)
    if precision == "fp16" and target.type == "cpu":
        console.print("[yellow]note[/]: fp16 on a CPU runs slow emulated kernels; the figures say little about a GPU")
    loaded = load_model(model, spec)
    print_load_warnings(model, loaded.warnings)
    task = task_for(registry.datasets[chosen.dataset], loaded)
    rows = _timed_rows(plans, loaded.clip, task, target, batch_size, steps, warmup, precision, compile_model, peak_tflops)
    failed = [r for r in rows if "error" in r]
    if as_json:
        typer.echo(json.dumps({"device": describe(target), "model": model, "rows": rows}, indent=2))
        if failed:
            raise typer.Exit(ExitCode.RUN_FAILED)
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
        raise typer.Exit(ExitCode.RUN_FAILED)


def _builtin_spec(model: str, declared: dict):
    """A built-in model's spec, for a name the registry does not declare."""
    from vptbench.models import BUILTIN_MODELS
    from vptbench.registry import ModelSpec

    if model not in BUILTIN_MODELS:
        raise UsageError("--model: " + unknown_name("model", model, [*declared, *BUILTIN_MODELS]))
    return ModelSpec(source="builtin", id=model)


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
