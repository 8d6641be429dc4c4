"""Flat per-run rows and per-experiment summaries: the numbers every report format shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from vptbench.reporting.caveats import (
    ENCODED_EARLIER,
    accuracy_interval,
    bound_by_budget,
    encode_seconds,
    encode_text,
    epochs_text,
    learned,
    run_interval,
)
from vptbench.results.records import COLUMNS, RunRecord, split_run_key

# Counts that stay whole numbers in the CSVs (50, not 50.0) even where some rows have none.
INTEGER_COLUMNS = [
    "seed", "trainable_params", "total_params", "test_correct", "test_total", "epochs_run", "best_epoch",
    "epochs_to_converge", "ref_trainable_params", "ref_epochs_to_converge", "runs", "runs_ok",
    "val_images", "runs_not_learned", "runs_bound_by_budget",
]  # fmt: skip

SUMMARY_COLUMNS = [
    "experiment", "tuner", "runs", "runs_ok", "status", "trainable_params", "trainable_percent",
    "val_accuracy_mean", "val_images", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci_low", "test_accuracy_ci_high",
    "test_macro_f1_mean", "epochs_to_converge_mean", "runs_not_learned", "runs_bound_by_budget",
    "train_seconds_mean", "images_per_second_mean", "cached_features", "encode_seconds",
    "peak_memory_mb_max", "ref_test_accuracy", "ref_difference", "run_interval_low", "run_interval_high", "ref_outside_interval",
    "ref_trainable_params", "ref_epochs_to_converge",
]  # fmt: skip

CACHED_MARK = " †"
CACHED_NOTE = (
    "† trains a head on frozen features encoded once per suite; its train time and images/s leave that encoding out "
    "(it is in setup_seconds): beside the train time, \"+N s encoding\" adds it back, or \"encoded earlier\" says an "
    "earlier run (or the feature cache) paid for it"
)


def flat_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run, results.csv's columns."""
    return pd.DataFrame([record.csv_row() for record in records], columns=COLUMNS)


def csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    """The frame as CSV with its counts as whole numbers: 50, not the 50.0 that a missing value in
    another row makes of them. (Only here: in memory the columns stay floats, NaN where missing.)"""
    return frame.astype({column: "Int64" for column in INTEGER_COLUMNS if column in frame and _whole_numbers(frame[column])}).to_csv(index=False, header=header)


def _whole_numbers(column: pd.Series) -> bool:
    values = column.dropna()
    return pd.api.types.is_numeric_dtype(values) and bool((values % 1 == 0).all())


def summarize(frame: pd.DataFrame, plan: list[str], records: Sequence[RunRecord] = ()) -> pd.DataFrame:
    """One row per experiment: mean and std over its successful seeds, a 95 % interval, references;
    its status also counts the seeds of the run's `plan` that have no record ("2 ok, 1 not run").

    Every seed is tested on the same test split, so the interval reflects that split's size: it is
    the interval of the mean accuracy over one split, never over n x seeds images. The reference
    flag tests another, one run's interval, which adds the seeds' spread (`caveats.run_interval`).

    `records`, the runs of `frame`, give what its columns do not hold (reporting.caveats): runs that
    never learned (left out of the epochs' mean) or were bound by the epoch budget, the validation
    split's size and the feature encoding's seconds; without them those columns are empty.
    """
    planned = Counter(split_run_key(key)[0] for key in plan)
    by_key = {(r.experiment, r.seed): r for r in records}
    rows = []
    for experiment, group in frame.groupby("experiment", sort=False):
        ok = group[group["status"] == "ok"]
        counted = group[group["trainable_params"].notna()]
        mean = ok["test_accuracy"].mean() if len(ok) else np.nan
        total = int(ok["test_total"].iloc[0]) if len(ok) else 0
        low, high = accuracy_interval(round(mean * total), total) if len(ok) else (np.nan, np.nan)
        run_low, run_high = run_interval(list(ok["test_accuracy"]), total) if len(ok) else (np.nan, np.nan)
        reference = group["ref_test_accuracy"].iloc[0]
        by_row = [by_key.get(key) for key in zip(ok["experiment"], ok["seed"].astype(int), strict=True)]
        runs = [r for r in by_row if r is not None]
        states = [None if r is None else learned(r) for r in by_row]  # False: never beat chance
        epochs = ok["epochs_to_converge"][np.array([state is not False for state in states], dtype=bool)]
        rows.append(
            {
                "experiment": experiment,
                "tuner": group["tuner"].iloc[0],
                "runs": len(group),
                "runs_ok": len(ok),
                "status": _status(group["status"], planned[experiment] - len(group)),
                "trainable_params": _first(counted, "trainable_params"),  # known for diverged runs too
                "trainable_percent": _first(counted, "trainable_percent"),
                "val_accuracy_mean": ok["val_accuracy"].mean(),
                "val_images": next((r.split_sizes.val for r in runs if r.split_sizes), np.nan),
                "test_accuracy_mean": mean,
                "test_accuracy_std": ok["test_accuracy"].std(ddof=1) if len(ok) > 1 else np.nan,
                "test_accuracy_ci_low": low,
                "test_accuracy_ci_high": high,
                "test_macro_f1_mean": ok["test_macro_f1"].mean(),
                "epochs_to_converge_mean": epochs.mean(),  # over the runs that learned
                "runs_not_learned": states.count(False) if records else np.nan,
                "runs_bound_by_budget": sum(bound_by_budget(r) for r, state in zip(by_row, states, strict=True) if r is not None and state is not False) if records else np.nan,
                "train_seconds_mean": ok["train_seconds"].mean(),
                "images_per_second_mean": ok["images_per_second"].mean(),
                "cached_features": bool(ok["cached_features"].eq(True).any()),
                "encode_seconds": encode_seconds(runs),
                "peak_memory_mb_max": ok["peak_memory_mb"].max(),
                "ref_test_accuracy": reference,
                "ref_difference": mean - reference if pd.notna(reference) else np.nan,
                "run_interval_low": run_low,
                "run_interval_high": run_high,
                "ref_outside_interval": bool(len(ok) and not run_low <= reference <= run_high) if pd.notna(reference) else None,
                "ref_trainable_params": group["ref_trainable_params"].iloc[0],
                "ref_epochs_to_converge": group["ref_epochs_to_converge"].iloc[0],
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _status(statuses: pd.Series, not_run: int) -> str:
    counts = statuses.value_counts()
    if list(counts.index) == ["ok"] and not_run <= 0:
        return "ok"
    return ", ".join([*(f"{n} {status}" for status, n in counts.items()), *([f"{not_run} not run"] if not_run > 0 else [])])


def _first(frame: pd.DataFrame, column: str):
    return frame[column].iloc[0] if len(frame) else np.nan


def display_rows(summary: pd.DataFrame) -> list[dict[str, str]]:
    """The summary as the strings both the console and Markdown tables show."""
    with_reference = summary["ref_test_accuracy"].notna().any()
    rows = []
    for row in summary.to_dict("records"):
        trained = pd.notna(row["trainable_params"]) and row["trainable_params"] != 0
        cached = CACHED_MARK if row["cached_features"] and trained else ""  # a head trained on features encoded once
        shown = {
            "Experiment": row["experiment"],
            "Tuner": row["tuner"],
            "Trainable": _params_text(row),
            "Val acc": _num(row["val_accuracy_mean"]),
            "Test acc": _accuracy_text(row),
            "Macro-F1": _num(row["test_macro_f1_mean"]),
            "Epochs to conv.": epochs_text(row["epochs_to_converge_mean"], row["runs_ok"], row["runs_not_learned"], row["runs_bound_by_budget"]),
            "Train time": _num(row["train_seconds_mean"] if row["trainable_params"] != 0 else None, "{:.1f} s") + cached + (encode_text(row["encode_seconds"]) if cached else ""),
            "Images/s": _num(row["images_per_second_mean"], "{:,.0f}") + (cached if pd.notna(row["images_per_second_mean"]) else ""),  # none after one epoch
            "Peak mem": _num(row["peak_memory_mb_max"], "{:,.0f} MiB"),
            "Status": row["status"],
        }
        if with_reference:
            shown["Reference"] = _num(row["ref_test_accuracy"])
            flag = " (!)" if row["ref_outside_interval"] else ""
            shown["Δ vs ref"] = _num(row["ref_difference"], "{:+.3f}") + (flag if pd.notna(row["ref_difference"]) else "")
        rows.append(shown)
    return rows


def shows_cached(rows: list[dict[str, str]]) -> bool:
    """Whether a displayed row carries the cached-features mark, which then needs its note."""
    return any(CACHED_MARK in row["Train time"] for row in rows)


def cached_note(summary: pd.DataFrame, rows: list[dict[str, str]]) -> str:
    """The cached-features note; where a row says its features were encoded earlier, it also names
    the experiments that encoded features and their seconds (zero-shot's, in the demo suite), so
    that the like-for-like total is on the page."""
    if not any(ENCODED_EARLIER in row["Train time"] for row in rows):
        return CACHED_NOTE
    paid = summary[summary["encode_seconds"].astype(float) > 0]
    where = ", ".join(f"{experiment} ({seconds:.1f} s)" for experiment, seconds in zip(paid["experiment"], paid["encode_seconds"], strict=True))
    return f"{CACHED_NOTE}; this run encoded features in {where}" if where else CACHED_NOTE


def _num(value, pattern: str = "{:.3f}") -> str:
    return "–" if value is None or pd.isna(value) else pattern.format(value)


def _params_text(row: dict) -> str:
    if pd.isna(row["trainable_params"]):
        return "–"
    return f"{int(row['trainable_params']):,} ({row['trainable_percent']:.2f} %)"


def _accuracy_text(row: dict) -> str:
    mean = row["test_accuracy_mean"]
    if pd.isna(mean):
        return "–"
    if row["runs_ok"] > 1:
        return f"{mean:.3f} ± {row['test_accuracy_std']:.3f}"
    return f"{mean:.3f} [{row['test_accuracy_ci_low']:.3f}, {row['test_accuracy_ci_high']:.3f}]"
