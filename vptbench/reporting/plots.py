"""PNG plots drawn on `matplotlib.figure.Figure` (no pyplot state), so they render headless."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from vptbench.results.io import write_atomic
from vptbench.results.records import RunRecord

PLOTS = {
    "loss": "loss_curves.png",
    "val_accuracy": "val_accuracy.png",
    "params": "accuracy_vs_params.png",
    "time": "accuracy_vs_time.png",
}


def write_plots(run_dir: Path, records: list[RunRecord]) -> list[Path]:
    """Curves of each experiment's first successful seed (the legend names it), and accuracy against cost."""
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        return []
    first: dict[str, RunRecord] = {}
    for record in ok:
        first.setdefault(record.experiment, record)
    written = []
    trained = {e: r for e, r in first.items() if r.history}
    if trained:
        written.append(save_figure(run_dir / PLOTS["loss"], _loss_figure(trained)))
        written.append(save_figure(run_dir / PLOTS["val_accuracy"], _val_accuracy_figure(trained)))
    written.append(save_figure(run_dir / PLOTS["params"], _scatter(ok, "trainable_params", "trainable parameters", log=True)))
    written.append(save_figure(run_dir / PLOTS["time"], _scatter(ok, "train_seconds", "training time (s)", log=False)))
    return written


def _nan_if_none(value: float | None) -> float:
    """A value stored as null (a NaN loss, in JSON) as the NaN that matplotlib draws as a gap, as it did None."""
    return float("nan") if value is None else value


def _loss_figure(trained: dict[str, RunRecord]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for index, (experiment, record) in enumerate(trained.items()):
        history = record.history or []
        color = f"C{index % 10}"
        name = f"{experiment} seed {record.seed}"
        axes.plot([h.epoch for h in history], [_nan_if_none(h.train_loss) for h in history], color=color, label=f"{name} train")
        evaluated = [h for h in history if h.val_loss is not None]
        axes.plot([h.epoch for h in evaluated], [_nan_if_none(h.val_loss) for h in evaluated], color=color, linestyle="--", label=f"{name} val")
    axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="Training (solid) and validation (dashed) loss")
    axes.legend(fontsize="small", ncols=2)
    return figure


def _val_accuracy_figure(trained: dict[str, RunRecord]) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for experiment, record in trained.items():
        evaluated = [h for h in record.history or [] if h.val_accuracy is not None]
        axes.plot([h.epoch for h in evaluated], [_nan_if_none(h.val_accuracy) for h in evaluated], label=f"{experiment} seed {record.seed}")
    axes.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch")
    axes.legend(fontsize="small")
    return figure


def _scatter(records: list[RunRecord], key: str, label: str, log: bool) -> Figure:
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    colors = {e: f"C{i % 10}" for i, e in enumerate(dict.fromkeys(r.experiment for r in records))}
    for record in records:
        x, y = getattr(record, key), record.test_accuracy
        assert y is not None  # an ok record is complete (RunRecord's validator)
        axes.scatter(x, y, color=colors[record.experiment])
        axes.annotate(record.experiment, (x, y), textcoords="offset points", xytext=(4, 4))
    if log:  # symmetric log: zero-shot's 0 trainable parameters sits at 0, not on a pretend 1
        axes.set_xscale("symlog", linthresh=1)
    axes.set(xlabel=label, ylabel="test accuracy", title=f"Test accuracy against {label}")
    axes.grid(alpha=0.3)
    return figure


def save_figure(path: Path, figure: Figure) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())
    return path
