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
        self.suite = self.progress.add_task("suite", total=total_runs, completed=finished_runs)  # a resume keeps some
        self.epochs = None

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None:
        self._drop_epoch_bar()
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
