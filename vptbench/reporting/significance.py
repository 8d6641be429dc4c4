"""Which differences between strategies are real: every pair of strategies of one suite, compared
on the same test images, with an interval for the difference and a p-value, Holm-corrected over
the pairs. Statistics come from scipy and statsmodels; nothing here is a hand-written test.

What is compared: per strategy, its `ok` runs whose records hold per-image test predictions
(`RunRecord.test_predictions`); per image, whether each run got it right. For strategies A and B:

- the difference is A's mean test accuracy over its seeds minus B's, in percentage points (the
  summary table's means, subtracted);
- the 95 % interval is a percentile bootstrap (`scipy.stats.bootstrap`, 9,999 resamples, a fixed
  seed) that resamples the test images, the same images for both strategies (they are paired by
  image), and, where a strategy ran several seeds, its seeds: one resample of seeds for both when
  they ran the same seeds (paired by seed too, as seeds also fix the validation split), else each
  strategy's own;
- the p-value, with one seed each, is McNemar's exact test
  (`statsmodels.stats.contingency_tables.mcnemar(exact=True)`) on the images exactly one of the two
  got right; with several seeds, a paired permutation test over the test images
  (`scipy.stats.permutation_test(permutation_type="samples")`, 9,999 random swaps, a fixed seed) of
  each image's seed-averaged correctness: it asks whether the test images tell the strategies apart,
  holding the seeds' models fixed (the interval also carries the seeds' spread);
- Holm's step-down correction (`statsmodels.stats.multitest.multipletests(method="holm")`) over all
  pairs compared keeps the chance of calling any true non-difference significant under 5 %.

Strategies tested on other images (another test split: their test labels differ) are not compared:
a paired test needs the same images, and two test sets' accuracies also differ by their difficulty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vptbench.results.records import RunRecord, Status

ALPHA = 0.05  # significance level, after Holm's correction
CONFIDENCE = 0.95
RESAMPLES = 9999  # bootstrap resamples and random permutations
SEED = 0  # the resampling's, fresh for every pair: the same records always give the same numbers
MCNEMAR, PERMUTATION = "mcnemar_exact", "permutation"

COLUMNS = [
    "experiment_a", "tuner_a", "experiment_b", "tuner_b", "test_images", "runs_a", "runs_b", "seeds_paired", "test",
    "accuracy_a", "accuracy_b", "difference_points", "ci_low_points", "ci_high_points", "p_value", "p_holm", "significant",
]  # fmt: skip


@dataclass(frozen=True)
class Strategy:
    """One experiment's ok runs: per seed (rows, by seed) and test image (columns), right or not."""

    experiment: str
    tuner: str
    seeds: tuple[int, ...]
    labels: tuple[int, ...]
    correct: np.ndarray


@dataclass
class Significance:
    """Every pair compared (`pairs`, `COLUMNS`, in plan order: each strategy against those before
    it) and, by experiment, why one with ok runs was not compared."""

    pairs: pd.DataFrame
    not_compared: dict[str, str] = field(default_factory=dict)

    def json_data(self) -> dict[str, Any]:
        """report.json's `significance`: the settings and every pair, as plain JSON values."""
        pairs = [{name: _plain(value) for name, value in row.items()} for row in self.pairs.to_dict("records")]
        return {"alpha": ALPHA, "confidence_level": CONFIDENCE, "resamples": RESAMPLES, "random_seed": SEED, "pairs": pairs, "not_compared": self.not_compared}


def pairwise(records: list[RunRecord], plan: list[str] | None = None) -> pd.DataFrame:
    """Every pair of strategies tested on the same images (`COLUMNS`); empty when fewer than two."""
    return compare(records, plan).pairs


def compare(records: list[RunRecord], plan: list[str] | None = None) -> Significance:
    """The pairs of `pairwise` and the strategies left out; `plan` (run keys) orders experiments,
    else their first record does."""
    found, not_compared = strategies(records, plan)
    rows = [_pair(a, b) for i, a in enumerate(found) for b in found[:i] if a.labels == b.labels]
    compared = {name for row in rows for name in (row["experiment_a"], row["experiment_b"])}
    for s in found:
        if s.experiment not in compared and len(found) > 1:
            not_compared[s.experiment] = f"tested on other images ({len(s.labels):,}) than the others: a paired comparison needs the same images"
    if rows:
        corrected, significant = holm([row["p_value"] for row in rows])
        for row, p, real in zip(rows, corrected, significant, strict=True):
            row["p_holm"], row["significant"] = p, real
    order = _order(records, plan)
    return Significance(pd.DataFrame(rows, columns=COLUMNS), dict(sorted(not_compared.items(), key=lambda item: order.index(item[0]))))


def strategies(records: list[RunRecord], plan: list[str] | None = None) -> tuple[list[Strategy], dict[str, str]]:
    """Per experiment (in plan order) with ok runs, their per-image correctness; and why an
    experiment with ok runs has none to compare."""
    runs: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.trial is None and record.status == Status.ok:
            runs.setdefault(record.experiment, []).append(record)
    found: list[Strategy] = []
    left_out: dict[str, str] = {}
    for experiment in _order(records, plan):
        ok = sorted(runs.get(experiment, []), key=lambda r: r.seed)
        held = [r for r in ok if r.test_predictions is not None and r.test_labels is not None]
        if not ok:
            continue
        if len(held) < len(ok):
            left_out[experiment] = f"{len(ok) - len(held)} of its {len(ok)} ok runs hold no per-image test predictions (records written before vptbench kept them)"
        elif len({tuple(r.test_labels or ()) for r in held}) > 1:
            left_out[experiment] = "its runs were tested on different images"
        else:
            labels = np.asarray(held[0].test_labels)
            correct = np.array([np.asarray(r.test_predictions) == labels for r in held], dtype=bool).reshape(len(held), len(labels))
            found.append(Strategy(experiment, held[0].tuner, tuple(r.seed for r in held), tuple(held[0].test_labels or ()), correct))
    return found, left_out


def _order(records: list[RunRecord], plan: list[str] | None) -> list[str]:
    planned = [key.rsplit("-seed", 1)[0] for key in plan or []]  # run keys (results.records.run_key)
    return list(dict.fromkeys([*planned, *(r.experiment for r in records)]))


def _pair(a: Strategy, b: Strategy) -> dict[str, Any]:
    """A against B: difference, interval and p-value (p_holm and significant are set over all pairs)."""
    paired_seeds = a.seeds == b.seeds
    low, high = difference_interval(a.correct, b.correct, paired_seeds)
    if len(a.seeds) == len(b.seeds) == 1:
        test, p = MCNEMAR, mcnemar_p(a.correct[0], b.correct[0])
    else:
        test, p = PERMUTATION, permutation_p(a.correct.mean(axis=0), b.correct.mean(axis=0))
    accuracy_a, accuracy_b = float(a.correct.mean()), float(b.correct.mean())
    return {
        "experiment_a": a.experiment, "tuner_a": a.tuner, "experiment_b": b.experiment, "tuner_b": b.tuner,
        "test_images": len(a.labels), "runs_a": len(a.seeds), "runs_b": len(b.seeds), "seeds_paired": paired_seeds, "test": test,
        "accuracy_a": accuracy_a, "accuracy_b": accuracy_b, "difference_points": 100 * (accuracy_a - accuracy_b),
        "ci_low_points": 100 * low, "ci_high_points": 100 * high, "p_value": p, "p_holm": p, "significant": False,
    }  # fmt: skip


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar's exact test on two strategies' correctness (one bool per image): the binomial test
    of the images A alone got right against those B alone got right."""
    from statsmodels.stats.contingency_tables import mcnemar

    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    return float(mcnemar(table, exact=True).pvalue)


def permutation_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the mean of the per-image differences `a - b` under random swaps of
    a[i] and b[i] (exact when 2^images <= RESAMPLES)."""
    from scipy.stats import permutation_test

    result = permutation_test(
        (a, b), _mean_difference, permutation_type="samples", vectorized=True, n_resamples=RESAMPLES, batch=_batch(len(a)), rng=np.random.default_rng(SEED)
    )
    return float(result.pvalue)


def _batch(images: int) -> int:
    """Resamples computed at once: each holds a draw per image, so memory stays bounded."""
    return max(1, min(RESAMPLES, 2**21 // max(images, 1)))


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def difference_interval(a: np.ndarray, b: np.ndarray, paired_seeds: bool) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval of mean(a) - mean(b), `a` and `b` being correctness
    (seeds × images, the same images). Each resample draws the test images with replacement (the
    same draw for both strategies) and each strategy's seeds with replacement (one draw for both
    when `paired_seeds`: their rows are the same seeds in the same order); a strategy's single seed
    is kept as it is."""
    from scipy.stats import bootstrap

    images = a.shape[1]
    if images < 2:  # nothing to resample
        return float("nan"), float("nan")
    a_, b_ = a.astype(float), b.astype(float)
    groups = [len(a)] if paired_seeds else [len(a), len(b)]
    samples = [np.arange(images)] + [np.arange(n) for n in groups if n >= 2]

    def statistic(*drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        counts = _counts(drawn[0].astype(np.intp), images)  # how often each image was drawn, per resample
        seeds = iter(drawn[1:])
        seeds_a = next(seeds) if groups[0] >= 2 else None
        seeds_b = seeds_a if paired_seeds else next(seeds) if groups[1] >= 2 else None
        return _over_seeds(a_ @ counts.T / images, seeds_a) - _over_seeds(b_ @ counts.T / images, seeds_b)

    result = bootstrap(samples, statistic, n_resamples=RESAMPLES, batch=_batch(images), vectorized=True, paired=False, confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _counts(drawn: np.ndarray, n: int) -> np.ndarray:
    """Per resample (row of `drawn`), how many times each of the `n` items was drawn."""
    drawn = np.atleast_2d(drawn)
    offsets = (np.arange(len(drawn))[:, None] * n + drawn).ravel()
    return np.bincount(offsets, minlength=len(drawn) * n).reshape(len(drawn), n).astype(float)


def _over_seeds(accuracy: np.ndarray, drawn: np.ndarray | None) -> np.ndarray:
    """Mean over seeds of per-seed accuracies (seeds × resamples), over the drawn seeds (resamples ×
    seeds) when given."""
    if drawn is None:
        return accuracy.mean(axis=0)
    return np.take_along_axis(accuracy.T, np.atleast_2d(drawn.astype(np.intp)), axis=1).mean(axis=1)


def holm(p_values: list[float]) -> tuple[list[float], list[bool]]:
    """Holm-corrected p-values and whether each is significant at ALPHA after the correction."""
    from statsmodels.stats.multitest import multipletests

    reject, corrected, _, _ = multipletests(p_values, alpha=ALPHA, method="holm")
    return [float(p) for p in corrected], [bool(r) for r in reject]


def _plain(value: Any) -> Any:
    """A frame's value as JSON takes it (numpy scalars to Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


# --- report.md --------------------------------------------------------------------------------


def markdown_section(significance: Significance) -> list[str]:
    """"## Which differences are real": one line per pair, the method in one paragraph; [] when no
    pair was compared."""
    pairs = significance.pairs
    if pairs.empty:
        return []
    tests = set(pairs["test"])
    lines = ["## Which differences are real", "", _method(pairs), ""]
    for row in pairs.to_dict("records"):
        which = f" ({'McNemar' if row['test'] == MCNEMAR else 'permutation'})" if len(tests) > 1 else ""
        text = (
            f"{row['experiment_a']} ({row['tuner_a']}) vs {row['experiment_b']} ({row['tuner_b']}): "
            f"{_points(row['difference_points'], '+')} points [{_points(row['ci_low_points'])}, {_points(row['ci_high_points'])}], "
            f"p {_p(row['p_value'])} (Holm {_p(row['p_holm']).removeprefix('= ')}){which}"
        )
        lines.append(f"- **{text} — significant**" if row["significant"] else f"- {text}")
    lines.append("")
    if significance.not_compared:
        lines += ["Not compared: " + "; ".join(f"{e}, {why}" for e, why in significance.not_compared.items()) + ".", ""]
    return lines


def _method(pairs: pd.DataFrame) -> str:
    images = sorted(set(pairs["test_images"]))
    on = f"the same {images[0]:,} test images" if len(images) == 1 else "the same test images"
    tests = set(pairs["test"])
    mcnemar = "McNemar's exact test (on the images exactly one of the two got right)"
    permutation = (
        f"a paired permutation test over the test images ({RESAMPLES:,} random swaps of the two strategies' "
        "seed-averaged correctness on an image; it holds the seeds' models fixed)"
    )
    if tests == {MCNEMAR}:
        interval, p = f"a paired bootstrap over the test images (percentile, {RESAMPLES:,} resamples)", mcnemar
    else:
        interval = f"a bootstrap over the test images (paired) and the seeds (one draw for both when they ran the same seeds; percentile, {RESAMPLES:,} resamples)"
        p = permutation if tests == {PERMUTATION} else f"{mcnemar} where both ran one seed, else of {permutation}"
    count = len(pairs)
    return (
        f"Each line compares two strategies on {on}: A − B in test accuracy (mean over seeds), in percentage points, "
        f"with a 95 % interval from {interval}, and the p-value of {p}. Holm's correction adjusts the p-values for the "
        f"{count} comparison{'' if count == 1 else 's'} made here, so that the chance of calling any true non-difference "
        f"significant stays under {ALPHA * 100:g} %; **bold**: significant at {ALPHA:g} after the correction."
    )


def _points(value: float, sign: str = "") -> str:
    return "–" if value != value else f"{value + 0.0:{sign}.1f}"  # + 0.0: no "-0.0"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"= {value:.3f}"


def csv_text(significance: Significance) -> str:
    return significance.pairs.to_csv(index=False)
