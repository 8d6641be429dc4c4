"""Options several commands share, and small wording helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="Registry TOML (default: ./benchmark.toml, else the packaged one).")]
SuiteOption = Annotated[str | None, typer.Option("--suite", "-s", help="Suite to use (default: the registry's default_suite).")]
RESULTS = Path("results")  # where run directories go unless --output says otherwise


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
