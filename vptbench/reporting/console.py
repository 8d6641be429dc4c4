"""Rich tables for the terminal: the run summary, and the shape every other table shares."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from vptbench.reporting.tables import CACHED_NOTE, NUMERIC, display_rows, flat_frame, shows_cached, summarize


def make_table(title: str, columns: Iterable[str], widths: dict[str, int] | None = None) -> Table:
    """Numbers right-aligned; long cells fold instead of being cut to an ellipsis; `widths` fixes
    columns' widths (their headers then wrap between words)."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in NUMERIC else "left", overflow="fold", width=(widths or {}).get(column))
    return table


# What a narrow terminal keeps first; every column is in report.md and summary.csv.
PRIORITY = ["Experiment", "Test acc", "Tuner", "Status", "Trainable", "Train time", "Epochs to conv.", "Val acc", "Reference", "Δ vs ref", "Macro-F1", "Images/s", "Peak mem"]
BORDER = 3  # a column's padding and right border; the table adds one more on the left


def summary_table(records: list[dict], title: str, width: int) -> Table:
    """The run summary in `width` columns: no cell is ever wrapped, so the least important
    columns are left out (and named) when the terminal is too narrow for all of them."""
    rows = display_rows(summarize(flat_frame(records)))
    columns, widths = fitting_columns(rows, width) if rows else (["Experiment"], {})
    table = make_table(title, columns, widths)
    for row in rows:
        table.add_row(*(row[column] for column in columns), style=None if row["Status"] == "ok" else "red")
    notes = [CACHED_NOTE] if shows_cached(rows) and "Train time" in columns else []
    hidden = [column for column in rows[0] if column not in columns] if rows else []
    if hidden:
        notes.append(f"Left out at this width: {', '.join(hidden)} (see report.md)")
    table.caption, table.caption_justify = "\n".join(notes) or None, "left"
    return table


def fitting_columns(rows: list[dict[str, str]], width: int) -> tuple[list[str], dict[str, int]]:
    """The columns to show, in display order, and their fixed widths: all of them at their natural
    width when they fit; else the most important ones, with headers wrapped between words."""
    cells = {column: max(len(row[column]) for row in rows) for column in rows[0]}
    if sum(max(len(column), cell) + BORDER for column, cell in cells.items()) + 1 <= width:
        return list(cells), {}
    tight = {column: max(cell, *(len(word) for word in column.split())) for column, cell in cells.items()}
    kept, used = set(), 1
    for column in sorted(cells, key=lambda c: PRIORITY.index(c) if c in PRIORITY else len(PRIORITY)):
        if used + tight[column] + BORDER <= width or not kept:
            kept.add(column)
            used += tight[column] + BORDER
    columns = [column for column in cells if column in kept]
    return columns, {column: tight[column] for column in columns}
