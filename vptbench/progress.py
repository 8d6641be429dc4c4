"""Rich progress bars for a suite: one bar for the suite, one for the running experiment's epochs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RichObserver:
    """Draws progress from the runner's callbacks; the harness itself never imports rich."""

    def __init__(self, console: Console, total_runs: int, finished_runs: int = 0) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        # shown from the first run on: loading and decoding draw their own bars, and a data error must not leave "suite 0/N" behind
        self.suite = self.progress.add_task("suite", total=total_runs, completed=finished_runs, visible=False)  # a resume keeps some
        self.epochs = None

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
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

    def epoch_done(self, record) -> None:
        stats = f"loss {record.train_loss:.3f}" + (f" · val acc {record.val_accuracy:.3f}" if record.val_accuracy is not None else "")
        self.progress.update(self.epochs, advance=1, description=f"{self.label} {stats}")

    def run_done(self, record: dict) -> None:
        self._drop_epoch_bar()
        outcome = record["status"] if record["status"] != "ok" else f"test acc {record['test_accuracy']:.3f}"
        self.progress.update(self.suite, advance=1, description=f"suite (last: {record['experiment']} {outcome})")

    def _drop_epoch_bar(self) -> None:
        if self.epochs is not None:
            self.progress.remove_task(self.epochs)
            self.epochs = None
