"""`vptbench list`: the installed tuners, the registry's suites, and one suite's experiments checked."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from vptbench.cli.options import ConfigOption, SuiteOption
from vptbench.terminal import reports_errors, table_console


@reports_errors
def list_command(
    config: ConfigOption = None,
    suite: SuiteOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """List installed tuners (with load status) and the suite's experiments, each checked: invalid
    params exit 2; a broken plugin's experiments show as broken, as `run` records them failed."""
    from vptbench import plugins
    from vptbench.cli.searching import suite_note
    from vptbench.harness.planning import check_experiments, invalid_experiments, select_suite
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
    suites: list[dict[str, Any]] = [
        {
            "name": name, "default": name == registry.default_suite, "model": s.model, "dataset": s.dataset, "experiments": list(s.experiments), "description": s.description,
            "search": s.search.model_dump(mode="json", exclude_none=True) if s.search else None,
        }  # fmt: skip
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
            shown = {"ok": "ok", "broken": f"[red]broken[/]: {t['error']}"}.get(t["status"], f"[yellow]{t['error']}[/]")
            table.add_row(t["name"], t["distribution"], t["version"], shown)
        out.print(table)
        table = make_table(f"Suites in {config_path} (--suite NAME lists another's experiments)", ("Suite", "Model", "Dataset", "Experiments", "Description"))
        for entry in suites:
            note = suite_note(registry.suites[entry["name"]])
            name = entry["name"] + (" (default)" if entry["default"] else "") + (f" ({note})" if note else "")
            table.add_row(f"[bold]{name}[/]" if entry["name"] == suite_name else name, entry["model"], entry["dataset"], ", ".join(entry["experiments"]), entry["description"])
        out.print(table)
        columns = ("Experiment", "Tuner", "Params", "Description", "Status")
        about = f": {chosen.description}" if chosen.description else ""
        table = make_table(f"Suite '{suite_name}' ({chosen.model} on {chosen.dataset}){about}", columns)
        for e in experiments:
            shown = "ok" if e["status"] == "ok" else f"[red]{e['status']}[/]"
            table.add_row(e["id"], e["tuner"], json.dumps(e["params"]) if e["params"] else "", e["description"], shown)
        out.print(table)
        if any(e["search"] for e in experiments):
            _print_search(out, suite_name, chosen, experiments)
    if invalid:
        raise invalid_experiments(config_path, [e["error"] for e in invalid])


def _print_search(out, suite_name: str, suite, experiments: list[dict]) -> None:
    """Per experiment of a searched suite: what its search tunes, and its budget."""
    from rich.markup import escape

    from vptbench.cli.searching import PRUNERS, seeds_text, space_text, trial_epochs
    from vptbench.registry.search import ResolvedSearch
    from vptbench.reporting.console import make_table

    columns = ("Experiment", "Searched", "Trials", "Sampler", "Pruner", "Parallel", "Final seeds", "Trial epochs")
    table = make_table(f"Search of suite '{suite_name}' (on validation, before the final runs)", columns)
    for e in experiments:
        if e["status"] == "invalid":
            continue
        if not e["search"]:
            table.add_row(e["id"], "not searched", "", "", "", "", "", "")
            continue
        search = ResolvedSearch.model_validate(e["search"])
        budget = f"≤ {trial_epochs(search, suite.training_for(e['id']).epochs):,} epochs"
        space = escape(space_text(search, sep="\n"))  # a dimension a line
        table.add_row(e["id"], space, str(search.trials), search.sampler, PRUNERS[search.pruner], str(search.parallel), seeds_text(search.final_seeds), budget)
    out.print(table)
    out.print("Trial epochs: trials × each trial's epochs, at most; pruning and early stopping only lower it. A tuner with nothing to train is not searched.", soft_wrap=True, highlight=False)
