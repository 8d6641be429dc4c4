"""What the `vptbench` command prints besides its tables' contents: the stderr console, tables that
stay wide in logs, and every error (ours and Click's own) as one red line with its exit code."""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import cast

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from vptbench.errors import SIGTERM_RECEIVED, ExitCode, VptbenchError, stop_reason

console = Console(stderr=True)


@dataclass
class Settings:
    """The options given before the command, kept in its click context (`ctx.obj`)."""

    debug: bool = False  # tracebacks instead of one-line errors


def error_line(message: str) -> None:
    """Brackets in the message ("[models]", a path) are text, not Rich markup."""
    console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


# Click's exceptions, from whichever click this typer uses (newer typers vendor their own copy).
ClickUsageError = cast(type, typer.BadParameter.__base__)
ClickException = ClickUsageError.__base__
NoArgsIsHelp = getattr(sys.modules[ClickUsageError.__module__], "NoArgsIsHelpError", ())


class OneLineErrors(TyperGroup):
    """Click's own errors (an unknown option, a value out of range) get the same one red line and
    exit code as ours, instead of a usage banner and a boxed message."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            if isinstance(exc, NoArgsIsHelp):
                exc.show()
            else:
                ctx = getattr(exc, "ctx", None)
                hint = f" (see '{ctx.command_path} --help')" if ctx else ""
                error_line(f"{exc.format_message().rstrip('.')}{hint}")
            code = exc.exit_code
        except typer.Abort as exc:  # older typers: Ctrl-C outside a command
            error_line("aborted")
            code = ExitCode.INTERRUPTED if isinstance(exc.__context__, KeyboardInterrupt) else ExitCode.RUN_FAILED
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def table_console(stderr: bool = False) -> Console:
    """Wide tables stay readable in logs: off a terminal, Rich would squeeze them into 80 columns."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=160)


def reports_errors(command):
    """Turn every expected error into one red line and its exit code; tracebacks only with --debug."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with _sigterm_as_interrupt():
                return command(*args, **kwargs)
        except VptbenchError as exc:
            if _settings().debug:  # the traceback, and still the documented exit code
                traceback.print_exc()
            else:
                error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            reason, run_dir = stop_reason(), getattr(exc, "run_dir", None)
            if run_dir is None:
                console.print(f"[yellow]{reason}[/]")
            else:
                where = escape(str(run_dir))
                console.print(f"[yellow]{reason}[/]: finished runs are kept in {where}; finish with `vptbench run --resume {where}`", soft_wrap=True)
            raise typer.Exit(ExitCode.TERMINATED if SIGTERM_RECEIVED.is_set() else ExitCode.INTERRUPTED) from None

    return wrapper


def _settings() -> Settings:
    """The running command's settings, from the click context of whichever click this typer uses."""
    click_globals = importlib.import_module(ClickException.__module__.rsplit(".", 1)[0] + ".globals")
    ctx = click_globals.get_current_context(silent=True)
    obj = ctx.find_object(Settings) if ctx is not None else None
    return obj or Settings()


@contextmanager
def _sigterm_as_interrupt():
    """A scheduler's stop (Slurm, Kubernetes, `kill`) ends a command as Ctrl-C does: finished runs
    recorded, run.json marked interrupted, exit 143; the previous handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    SIGTERM_RECEIVED.clear()
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm(signum, frame) -> None:
    SIGTERM_RECEIVED.set()
    raise KeyboardInterrupt
