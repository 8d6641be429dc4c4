"""Progress for long commands: Rich bars on a terminal, plain timestamped lines in a log (a CI job,
`2>run.log`), where Rich would draw nothing until the end."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vptbench.errors import first_line
from vptbench.results.records import RunRecord

LOG_EVERY_SECONDS = 30.0  # off a terminal, a long run still says how far it is this often


def bars(console: Console) -> Progress:
    """Bars on a terminal; elsewhere a Progress that draws nothing, and the caller writes lines."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_interactive,  # a dumb terminal too: Rich would draw only the end
    )


def log_line(console: Console, text: str) -> None:
    """One plain line for a log, with the time of day so that a slow step shows."""
    console.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, highlight=False, soft_wrap=True)


class RichObserver:
    """Draws progress from the runner's callbacks; the harness itself never imports rich."""

    def __init__(self, console: Console, total_runs: int, finished_runs: int = 0) -> None:
        self.console = console
        self.progress = bars(console)
        self.lines = self.progress.disable
        # shown from the first run on: loading and decoding draw their own bars, and a data error must not leave "suite 0/N" behind
        self.suite = self.progress.add_task("suite", total=total_runs, completed=finished_runs, visible=False)  # a resume keeps some
        self.epochs: TaskID | None = None

    def __enter__(self) -> RichObserver:
        self.progress.start()
        if self.lines:  # loading and decoding can take minutes; the bars that say so are not drawn
            log_line(self.console, "loading the model and decoding the data")
        return self

    def __exit__(self, *exc) -> None:
        if self.lines:
            return
        if any(task.visible for task in self.progress.tasks):
            self.progress.stop()
        else:  # stopped before any bar (a data error, say): Progress.stop would leave a blank line
            self.progress.live.transient = True
            self.progress.live.stop()

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None:
        self._drop_epoch_bar()
        self.progress.update(self.suite, visible=True)
        self.label = f"  {experiment_id} seed {seed}"
        self.epochs = self.progress.add_task(self.label + (" evaluating" if not epochs else ""), total=max(epochs, 1))
        self.logged = time.monotonic()

    def epoch_done(self, record) -> None:
        stats = f"loss {record.train_loss:.3f}" + (f" · val acc {record.val_accuracy:.3f}" if record.val_accuracy is not None else "")
        assert self.epochs is not None, "epoch_done before run_started"
        self.progress.update(self.epochs, advance=1, description=f"{self.label} {stats}")
        if self.lines and time.monotonic() - self.logged >= LOG_EVERY_SECONDS:
            epochs = self._task(self.epochs)
            log_line(self.console, f"{self.label.strip()}: epoch {epochs.completed:.0f}/{epochs.total:.0f} · {stats}")
            self.logged = time.monotonic()

    def run_done(self, record: RunRecord) -> None:
        self._drop_epoch_bar()
        if record.status != "ok":
            outcome = str(record.status)
        else:  # a trial is scored on validation, a run on test
            outcome = f"val acc {record.val_accuracy:.3f}" if record.trial is not None else f"test acc {record.test_accuracy:.3f}"
        # visible here too: runs on Ray workers never call run_started on this side
        self.progress.update(self.suite, advance=1, visible=True, description=f"suite (last: {record.experiment} {outcome})")
        if self.lines:
            suite = self._task(self.suite)
            outcome = f"{outcome}: {first_line(record.error)}" if record.error.strip() else outcome
            epochs = record.epochs_run
            which = f"trial {record.trial}" if record.trial is not None else f"seed {record.seed}"
            took = f" · {epochs} epoch{'' if epochs == 1 else 's'} in {record.train_seconds or 0:.1f} s" if epochs else ""
            log_line(self.console, f"[{suite.completed:.0f}/{suite.total:.0f}] {record.experiment} {which}: {outcome}{took}")

    def expect(self, runs: int) -> None:
        self.progress.update(self.suite, total=self._task(self.suite).total + runs)

    def _task(self, task_id):
        return next(task for task in self.progress.tasks if task.id == task_id)

    def _drop_epoch_bar(self) -> None:
        if self.epochs is not None:
            self.progress.remove_task(self.epochs)
            self.epochs = None
