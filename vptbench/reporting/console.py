"""Rich tables for the terminal: the run summary, and the shape every other table shares."""

from __future__ import annotations

from collections.abc import Iterable

from rich.markup import escape
from rich.table import Table

from vptbench.results.records import RunRecord

# Columns of the displayed tables that hold numbers: right-aligned in the terminal and in Markdown.
NUMERIC = {"Step", "GFLOPs/img", "TFLOP/s", "MFU", "Trainable", "Total", "Trainable %", "Val acc", "Test acc", "Macro-F1", "Epochs to conv.", "Train time", "Images/s", "Peak mem", "Reference", "Δ vs ref"}
NUMERIC |= {"Default val acc", "Tuned val acc", "Tuned test acc", "Trial epochs", "Trial time"}  # a search's table


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


# `vptbench bench`'s columns in display order, then by priority; the command lists failed
# strategies' reasons under the table.
THROUGHPUT_COLUMNS = ("Experiment", "Tuner", "Mode", "Trainable", "Step", "Images/s", "GFLOPs/img", "TFLOP/s", "MFU", "Peak mem", "Status")
THROUGHPUT_PRIORITY = ["Experiment", "Images/s", "Status", "Step", "MFU", "Peak mem", "Tuner", "Trainable", "Mode", "TFLOP/s", "GFLOPs/img"]


def summary_table(records: list[RunRecord], plan: list[str], title: str, width: int) -> Table:
    """The run summary in `width` columns: no cell is ever wrapped, so the least important
    columns are left out (and named) when the terminal is too narrow for all of them."""
    from vptbench.reporting.caveats import column_notes
    from vptbench.reporting.tables import cached_note, display_rows, flat_frame, shows_cached, summarize

    summary = summarize(flat_frame(records), plan, records)
    rows = display_rows(summary)
    table, columns = _fitted(rows, title, width, PRIORITY, "see report.md")
    notes = [cached_note(summary, rows)] if shows_cached(rows) and "Train time" in columns else []
    return _noted(table, notes + [note for column, note in column_notes(summary, rows).items() if column in columns])


# A search's columns (reporting.search.search_rows) by what a narrow terminal keeps first.
SEARCH_PRIORITY = ["Experiment", "Tuned test acc", "Tuned val acc", "Default val acc", "Tuned", "Trials", "Note", "Trial time", "Tuner", "Default", "Trial epochs", "Searched"]


def search_table(rows: list[dict[str, str]], title: str, width: int) -> Table:
    """A search's rows (`reporting.search.search_rows`, its shown columns) in `width` columns,
    fitted as the run summary is; a strategy whose trials all failed, and so ran its defaults, in red."""
    if not rows:
        return make_table(title, ["Experiment"])
    columns, widths = fitting_columns(rows, width, SEARCH_PRIORITY)
    table = make_table(title, columns, widths)
    for row in rows:
        unfinished = row["Tuned"] == "–" and row["Trials"] != "–"
        table.add_row(*(escape(row[column]) for column in columns), style="red" if unfinished else None)
    hidden = [column for column in rows[0] if column not in columns]
    table.caption = f"Left out at this width: {', '.join(hidden)} (see report.md)" if hidden else None
    table.caption_justify = "left"
    return table


def throughput_table(results: list[dict], title: str, width: int, peaks: str | None) -> Table:
    """`vptbench bench`'s rows in `width` columns, fitted as the run summary is."""
    rows = []
    for r in results:
        if "error" in r:
            rows.append({**dict.fromkeys(THROUGHPUT_COLUMNS, ""), "Experiment": r["experiment"], "Tuner": r["tuner"], "Status": "failed"})
            continue
        rows.append({
            "Experiment": r["experiment"], "Tuner": r["tuner"], "Mode": r["mode"], "Trainable": f"{r['trainable_params']:,}",
            "Step": f"{r['step_ms']:.1f} ms", "Images/s": f"{r['images_per_second']:,.1f}", "GFLOPs/img": f"{r['gflops_per_image']:.3g}",
            "TFLOP/s": f"{r['achieved_tflops']:.3g}", "MFU": f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–",
            "Peak mem": f"{r['peak_memory_mb']:,.0f} MiB", "Status": "ok",
        })  # fmt: skip
    table, _ = _fitted(rows, title, width, THROUGHPUT_PRIORITY, "see --json")
    return _noted(table, [f"MFU against a dense peak of {peaks} TFLOP/s"] if peaks else [])


def _noted(table: Table, notes: list[str]) -> Table:
    """`notes` above the caption that names the columns left out, if any."""
    table.caption = "\n".join([*notes, str(table.caption)] if table.caption else notes) or None
    return table


def _fitted(rows: list[dict[str, str]], title: str, width: int, priority: list[str], elsewhere: str) -> tuple[Table, list[str]]:
    """A table of `rows` that never wraps a cell, its captions naming the columns left out."""
    columns, widths = fitting_columns(rows, width, priority) if rows else (["Experiment"], {})
    table = make_table(title, columns, widths)
    for row in rows:
        table.add_row(*(escape(row[column]) for column in columns), style=None if row["Status"] == "ok" else "red")
    hidden = [column for column in rows[0] if column not in columns] if rows else []
    table.caption = f"Left out at this width: {', '.join(hidden)} ({elsewhere})" if hidden else None
    table.caption_justify = "left"
    return table, columns


def fitting_columns(rows: list[dict[str, str]], width: int, priority: list[str] = PRIORITY) -> tuple[list[str], dict[str, int]]:
    """The columns to show, in display order, and their fixed widths: all of them at their natural
    width when they fit; else the most important ones, with headers wrapped between words."""
    cells = {column: max(len(row[column]) for row in rows) for column in rows[0]}
    if sum(max(len(column), cell) + BORDER for column, cell in cells.items()) + 1 <= width:
        return list(cells), {}
    tight = {column: max(cell, *(len(word) for word in column.split())) for column, cell in cells.items()}
    kept, used = set[str](), 1
    for column in sorted(cells, key=lambda c: priority.index(c) if c in priority else len(priority)):
        if used + tight[column] + BORDER <= width or not kept:
            kept.add(column)
            used += tight[column] + BORDER
    columns = [column for column in cells if column in kept]
    return columns, {column: tight[column] for column in columns}
