"""What a number needs beside it so that it cannot mislead (issue #24): a run that never learned,
whose "epochs to converge" would read 1; a convergence cut short by the epoch budget; an interval
for the reference flag that counts the seeds' spread; the validation split a "val acc" was picked
on; and the one-time feature encoding that † rows' train time leaves out."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pandas as pd

from vptbench.results.records import RunRecord, Status

NOT_LEARNED = "not learned"
BUDGET = "budget"  # "≥ 30, budget": the best epoch was the budget's last
ENCODED_EARLIER = "encoded earlier"  # a † row whose features an earlier run computed


def chance_accuracy(record: RunRecord) -> float | None:
    """The accuracy of always predicting the most common class: its share of the test split (the
    validation split is stratified like it), never below 1/k for k = len(per_class) classes; None
    when the record has no per-class counts."""
    if not record.per_class:
        return None
    supports = [c.support for c in record.per_class]
    total = sum(supports)
    return max(supports) / total if total else 1 / len(supports)


def learned(record: RunRecord) -> bool | None:
    """Whether the run's validation accuracy ever rose above chance; None when the record cannot
    tell (nothing trained or was evaluated, or it has no per-class counts).

    A run "did not learn" when no evaluated epoch of its `history` beat chance (the majority
    class's accuracy, at least 1/k) by more than one validation image. Its "epochs to converge"
    would read 1, since the first epoch is already within tolerance of a flat best. Why this bound:
    a run that does not learn typically predicts one class, scoring that class's share of the
    validation split, which the test split's share (what the record holds) gives up to the rounding
    of a stratified split: under one image. The image of slack absorbs that rounding and no more,
    so a run two images above chance is never called unlearned; a run whose accuracy wanders a few
    images around chance by noise is missed, the error we prefer. A record without the split's size
    (`split_sizes`) gets no slack.
    """
    evaluated = [row.val_accuracy for row in record.history or [] if row.val_accuracy is not None]
    chance = chance_accuracy(record)
    if not evaluated or chance is None:
        return None
    one_image = 1 / record.split_sizes.val if record.split_sizes and record.split_sizes.val else 0.0
    return max(evaluated) > chance + one_image + 1e-9  # 1e-9: float rounding of count / total


def bound_by_budget(record: RunRecord) -> bool:
    """Whether the epoch budget ended the run at its best: its best validation epoch is its last,
    and neither early stopping nor pruning nor divergence stopped it. More epochs might then have
    found a better, later epoch, so its epochs to converge is a lower bound (the best can only rise
    with more epochs, and the first epoch within tolerance of it only come later)."""
    return (
        record.status == Status.ok
        and not record.stopped_early
        and bool(record.epochs_run)
        and record.best_epoch == record.epochs_run
    )


def number_text(value: float) -> str:
    """A mean of whole numbers as it is: 4.5 (not a half-to-even "4"), 4.33, 50."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def epochs_text(mean: float, runs: int, not_learned: float, bound: float) -> str:
    """The "Epochs to conv." cell of an experiment of `runs` successful seeds: the mean over those
    that learned, "≥ N, budget" when any of them was bound by the budget (the mean is then a lower
    bound), "not learned" when none learned, and how many did not where only some did."""
    not_learned = 0 if pd.isna(not_learned) else int(not_learned)
    if runs and not_learned == runs:
        return NOT_LEARNED
    if pd.isna(mean):
        return "–"
    text = f"≥ {number_text(mean)}, {BUDGET}" if not pd.isna(bound) and bound > 0 else number_text(mean)
    return f"{text}; {not_learned}/{runs} {NOT_LEARNED}" if not_learned else text


def accuracy_interval(correct: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of an accuracy. Unlike a bootstrap of the predictions it keeps its
    width at 0 % and 100 %: 320 of 320 right is still consistent with 98.8 %."""
    from scipy.stats import binomtest

    if total == 0:
        return float("nan"), float("nan")
    interval = binomtest(correct, total).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def run_interval(accuracies: Sequence[float], total: int, level: float = 0.95) -> tuple[float, float]:
    """A `level` interval for the test accuracy of one run of the experiment on a test split of
    `total` images, from its seeds' `accuracies`: the interval that the reference flag `(!)` tests.

    The reference is one run's accuracy (a study's single number), so the flag asks whether one run
    of ours could plausibly have scored it. That run's accuracy differs from our mean by
    - the seed's own deviation, plus the error of our mean over m seeds: variance s²(1 + 1/m),
      s estimated from m seeds, so Student's t with m − 1 degrees of freedom (a t prediction
      interval); seeds scored on one test split show this spread only, and
    - the sampling of the test images, which every seed on the split shares and so no number of
      seeds reveals: the binomial variance p(1 − p)/n of `total` images, as Wilson's interval of the
      mean (which keeps its width at 0 % and 100 %: 320 of 320 is consistent with 98.8 %).
    The two are independent, so their half-widths add in quadrature, on each side (wider than exact,
    since t's quantile exceeds the normal's; a flag then means the data rule the reference out).
    With one seed the spread cannot be estimated and the interval is Wilson's alone. Two seeds that
    disagree (0.85, 0.95) give t = 12.7 and an interval of [0, 1]: they rule out nothing.
    """
    from scipy.stats import t

    if not accuracies or not total:
        return math.nan, math.nan
    mean = statistics.fmean(accuracies)
    low, high = accuracy_interval(round(mean * total), total, level)
    if len(accuracies) < 2:
        return low, high
    m = len(accuracies)
    seeds = float(t.ppf((1 + level) / 2, m - 1)) * statistics.stdev(accuracies) * math.sqrt(1 + 1 / m)
    return max(0.0, mean - math.hypot(max(0.0, mean - low), seeds)), min(1.0, mean + math.hypot(max(0.0, high - mean), seeds))


def encode_text(seconds: float) -> str:
    """What a † row's train time leaves out: "(+4.1 s encoding)", or "(encoded earlier)" when an
    earlier run (or the feature cache) paid for its features; "" when unknown (an older record)."""
    if pd.isna(seconds):
        return ""
    return f" (+{seconds:.1f} s encoding)" if seconds > 0 else f" ({ENCODED_EARLIER})"


def encode_seconds(records: Sequence[RunRecord]) -> float:
    """An experiment's one-time encoding, the like-for-like addition to its train time: the mean
    over its runs that computed features (one, when its seeds shared them); 0 when all of them got
    features an earlier run computed; NaN when none used cached features or the records predate
    `encode_seconds`."""
    paid = [r.encode_seconds for r in records if r.encode_seconds]
    if paid:
        return statistics.fmean(paid)
    return 0.0 if any(r.encode_seconds == 0 for r in records) else math.nan


def val_note(sizes: Sequence[float]) -> str:
    """The footnote to "Val acc": what it is, and the validation split's size (`sizes`: each
    experiment's, NaN where unknown) with the points that one image is worth."""
    note = "Val acc: the selected epoch's (the maximum over epochs, optimistic)"
    known = sorted({int(n) for n in sizes if not pd.isna(n) and n > 0})
    if not known:
        return note
    if len(known) == 1:
        return f"{note}; {known[0]:,} validation images, one image = {100 / known[0]:.3g} points"
    return f"{note}; {known[0]:,} to {known[-1]:,} validation images by experiment, one image = {100 / known[-1]:.3g} to {100 / known[0]:.3g} points"


def epochs_note(cells: Sequence[str]) -> str:
    """The footnote to "Epochs to conv." when a cell carries a mark, else ""."""
    parts = []
    if any(BUDGET in cell for cell in cells):
        parts.append(f"≥ N, {BUDGET}: the best validation epoch was the budget's last, so more epochs might converge later")
    if any(NOT_LEARNED in cell for cell in cells):
        parts.append(f"{NOT_LEARNED}: validation accuracy never beat chance (the most common class's share) by more than one image; such runs are left out of the mean")
    return "Epochs to conv.: " + "; ".join(parts) if parts else ""


def column_notes(summary: pd.DataFrame, rows: list[dict[str, str]]) -> dict[str, str]:
    """Footnotes by the displayed column they explain, for the console and report.md."""
    notes = {}
    if any(row["Val acc"] != "–" for row in rows):
        notes["Val acc"] = val_note(list(summary["val_images"]))
    if epochs := epochs_note([row["Epochs to conv."] for row in rows]):
        notes["Epochs to conv."] = epochs
    return notes
