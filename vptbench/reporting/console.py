"""Rich tables for the terminal: the run summary, and the shape every other table shares."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from vptbench.reporting.tables import CACHED_NOTE, display_rows, flat_frame, shows_cached, summarize

NUMERIC = {"Step", "GFLOPs/img", "TFLOP/s", "MFU", "Trainable", "Total", "Trainable %", "Val acc", "Test acc", "Macro-F1", "Epochs to conv.", "Train time", "Images/s", "Peak mem", "Reference", "Δ vs ref"}


def make_table(title: str, columns: Iterable[str]) -> Table:
    """Numbers right-aligned; long cells fold instead of being cut to an ellipsis."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in NUMERIC else "left", overflow="fold")
    return table


def summary_table(records: list[dict], title: str) -> Table:
    rows = display_rows(summarize(flat_frame(records)))
    table = make_table(title, rows[0] if rows else ["Experiment"])
    for row in rows:
        table.add_row(*row.values(), style=None if row["Status"] == "ok" else "red")
    if shows_cached(rows):
        table.caption, table.caption_justify = CACHED_NOTE, "left"
    return table
