"""What keeping one more result costs as a suite grows: the record sink against full reports.

`python benchmarks/report_cost.py [--runs 1000]` hands the record sink (`reporting/sink.py`) that
many copies of one real-sized record (E1 of the demo suite: a zero-shot run with per-class metrics
and its confusion matrix), timing each `add` (the record's JSON, its curve and its results.csv row),
then the one `finish` that writes every report (summary, Markdown, four plots, JSON). Before the
sink, every run rewrote every report: 29.6 s at 50 records, 116 s at 500.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from vptbench.reporting.sink import ReportSink
from vptbench.results.manifest import RunConfig, RunManifest
from vptbench.results.records import RunRecord


def record(seed: int) -> RunRecord:
    classes = [str(d) for d in range(10)]
    return RunRecord(
        experiment="E1", tuner="zero-shot", seed=seed, status="ok", trainable_params=0, total_params=240_000, trainable_percent=0.0,
        train_accuracy=0.74, val_accuracy=0.75, test_accuracy=0.726, test_macro_f1=0.735, epochs_run=0, best_epoch=0,
        setup_seconds=0.1, train_seconds=0.0, eval_seconds=0.01, peak_memory_mb=550.0, memory_kind="peak-rss-since-reset", device="cpu",
        per_class=[{"class": c, "precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 54} for c in classes],
        confusion_matrix=[[54 if i == j else 0 for j in range(10)] for i in range(10)], history=[],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    plan = [f"E1-seed{seed}" for seed in range(args.runs)]
    manifest = RunManifest(suite="demo", config=RunConfig(model_name="demo-clip", dataset_name="digits"), seeds=list(range(args.runs)), plan=plan, status="running")
    with tempfile.TemporaryDirectory() as folder:
        sink, records, adds = ReportSink(Path(folder)), [], []
        sink.start(manifest, [])
        for seed in range(args.runs):
            records.append(record(seed))
            start = time.perf_counter()
            sink.add(records[-1])
            adds.append(time.perf_counter() - start)
        start = time.perf_counter()
        sink.finish(manifest.model_copy(update={"status": "finished"}), records)
        finish = time.perf_counter() - start
    window = min(50, args.runs)
    print(f"add, median of runs 1-{window}: {1000 * statistics.median(adds[:window]):.1f} ms")
    print(f"add, median of the last {window} (runs {args.runs - window + 1}-{args.runs}): {1000 * statistics.median(adds[-window:]):.1f} ms")
    print(f"all {args.runs} adds: {sum(adds):.1f} s; the final reports, once: {finish:.1f} s")


if __name__ == "__main__":
    main()
