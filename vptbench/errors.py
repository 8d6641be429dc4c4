"""Errors the CLI turns into one line and an exit code instead of a traceback."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterable
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Every exit code the `vptbench` command gives."""

    OK = 0
    RUN_FAILED = 1  # some run did not finish ok, or an error of the environment
    USAGE = 2  # bad command line, configuration, plugin, path, data or model
    INTERRUPTED = 130  # Ctrl-C: finished runs kept
    TERMINATED = 143  # SIGTERM: likewise


class VptbenchError(Exception):
    """An error caused by input or environment, reported as one line."""

    exit_code = ExitCode.RUN_FAILED


class UsageError(VptbenchError):
    """Bad command line, configuration, plugin or path."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The registry file is malformed or fails validation."""


class PluginError(UsageError):
    """A tuner cannot be found, loaded or is not a valid tuner; `traceback` keeps an import's."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class DataError(UsageError):
    """A dataset cannot be loaded or does not match its declaration."""


class ModelError(UsageError):
    """A model cannot be loaded or is unusable."""


class WriteError(UsageError):
    """A results file cannot be written: a read-only folder, a full disk."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a suite, carrying the run directory that keeps its finished runs."""

    def __init__(self, run_dir) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


# SIGTERM arrives as a KeyboardInterrupt (terminal.py); a flag, not an exception type, says which
# it was, since libraries such as Ray re-raise a plain KeyboardInterrupt of their own.
SIGTERM_RECEIVED = threading.Event()


def stop_reason() -> str:
    """How a run that was stopped says so in its record and on the terminal."""
    return "terminated (SIGTERM)" if SIGTERM_RECEIVED.is_set() else "interrupted (Ctrl-C)"


def unknown_name(kind: str, name: str, available: Iterable[str]) -> str:
    """lm-eval style message: the culprit, a suggestion, and the choices."""
    choices = sorted(available)
    by_lower = {choice.lower(): choice for choice in choices}  # `e1` for `E1`: too short for difflib alone
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    hint = f" Did you mean '{by_lower[close[0]]}'?" if close else ""
    return f"Unknown {kind} '{name}'.{hint} Available: {', '.join(choices) or 'none'}."


def folder_missing(path: Path) -> str:
    """Why a declared folder cannot be used, as the end of a sentence: a file there is not "missing"."""
    return "is a file, not a folder" if path.exists() else "does not exist"


def first_line(exc: BaseException | str) -> str:
    """An exception's (or a message's) first line, or its type when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def first_few(items: list[str], shown: int = 3, sep: str = ", ") -> str:
    """The first `shown` culprits of a long list, with a count of the others: one line however many."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return sep.join(items[:shown]) + more


def load_failure(where: str, what: str, offline: bool, remedy: str, exc: BaseException) -> str:
    """Why `what` did not load: the Hub being offline (with the local alternative) when a file could
    not be fetched, or the error itself (a damaged file in the local cache is not the Hub's fault)."""
    if offline and isinstance(exc, OSError):
        return f"{where}: '{what}' must come from the HuggingFace Hub, which is offline here (HF_HUB_OFFLINE=1); {remedy}"
    return f"{where}: cannot load '{what}': {first_line(exc)}"
