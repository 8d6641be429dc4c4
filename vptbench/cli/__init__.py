"""The `vptbench` command: one module per command, each parsing its options, calling one domain
function and rendering the outcome. Heavy imports wait inside the commands that need them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vptbench.cli import bench, listing, report, run
from vptbench.terminal import OneLineErrors, Settings

app = typer.Typer(
    cls=OneLineErrors,
    help="Compare ways of adapting CLIP to an image-classification task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vptbench {version('vptbench')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    ctx.obj = Settings(debug=debug)


app.command("list")(listing.list_command)
app.command("run")(run.run)
app.command("report")(report.report)
app.command("bench")(bench.bench)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
