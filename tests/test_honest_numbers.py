"""Numbers that cannot mislead (issue #24 item 5): runs that never learned and convergence cut by the
budget are marked, means of epochs keep their value, the reference flag counts the seeds' spread,
"val acc" says what it is and how coarse, and † rows show the encoding their train time leaves out.
Records are built by hand; nothing trains."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from vptbench.reporting.caveats import bound_by_budget, chance_accuracy, learned, number_text, run_interval
from vptbench.reporting.tables import CACHED_NOTE, accuracy_interval, cached_note, display_rows, flat_frame, summarize
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord

CLASSES, VAL, TEST = 4, 96, 320  # the paper suite's sizes: one validation image is 1.04 points


def _record(experiment="E2", seed=0, val=(0.3, 0.6, 0.9, 0.8), correct=288, supports=(80, 80, 80, 80), **extra) -> RunRecord:
    """An ok run whose validation accuracy went through `val`, with `correct` of the test split right."""
    best = max(val)
    confusion = [[0] * len(supports) for _ in supports]
    left = correct
    for i, support in enumerate(supports):  # the right answers on the diagonal, the rest one class over
        confusion[i][i] = min(support, left)
        confusion[i][(i + 1) % len(supports)] = support - confusion[i][i]
        left -= confusion[i][i]
    total = sum(supports)
    fields = {
        "experiment": experiment, "tuner": "linear-probe", "seed": seed, "status": "ok",
        "trainable_params": 2052, "total_params": 10_000, "trainable_percent": 20.52,
        "val_accuracy": best, "test_accuracy": correct / total, "test_macro_f1": 0.5,
        "epochs_run": len(val), "best_epoch": val.index(best) + 1,
        "epochs_to_converge": next(e for e, v in enumerate(val, 1) if v >= best - 0.01),
        "stopped_early": False, "setup_seconds": 0.5, "train_seconds": 2.0 + seed, "eval_seconds": 0.1,
        "images_per_second": 100.0, "peak_memory_mb": 50.0, "device": "cpu",
        "split_sizes": {"train": 384, "val": VAL, "test": total},
        "per_class": [{"class": f"c{i}", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": s} for i, s in enumerate(supports)],
        "confusion_matrix": confusion,
        "history": [{"epoch": e, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0, "val_accuracy": v, "train_seconds": 0.5} for e, v in enumerate(val, 1)],
    }  # fmt: skip
    return RunRecord.model_validate(fields | extra)


FLAT = (25 / VAL, 0.25, 24 / VAL, 25 / VAL)  # a run stuck on one class, within one image of chance: "converged" at 1


def _rows(records: list[RunRecord]) -> dict[str, dict[str, str]]:
    summary = summarize(flat_frame(records), [r.key for r in records], records)
    return {row["Experiment"]: row for row in display_rows(summary)}


def test_a_run_is_not_learned_when_validation_never_beats_chance_by_more_than_one_image():
    assert chance_accuracy(_record()) == 0.25
    assert learned(_record(val=FLAT)) is False
    assert learned(_record(val=(0.25, 26 / VAL))) is True  # two images above chance: it learned something
    assert learned(_record(val=(0.3, 0.6, 0.9))) is True
    skewed = (160, 80, 40, 40)  # chance is the majority class's share, 0.5, not 1/k
    assert chance_accuracy(_record(supports=skewed)) == 0.5
    assert learned(_record(val=(0.5, 0.45, 0.5), supports=skewed)) is False
    assert learned(_record(val=(0.5, 0.6), supports=skewed)) is True
    zero_shot = _record(experiment="E1", val=(0.7,)).model_copy(update={"history": [], "trainable_params": 0})
    assert learned(zero_shot) is None  # nothing trained: nothing to tell
    assert learned(_record(val=FLAT).model_copy(update={"per_class": None})) is None
    assert learned(_record(val=(0.25, 25 / VAL)).model_copy(update={"split_sizes": None})) is True  # no size: no slack


def test_a_run_whose_best_epoch_is_its_last_is_bound_by_the_budget_unless_something_else_stopped_it():
    assert bound_by_budget(_record(val=(0.3, 0.6, 0.9)))
    assert not bound_by_budget(_record(val=(0.3, 0.9, 0.8)))
    assert not bound_by_budget(_record(val=(0.3, 0.6, 0.9), stopped_early=True))
    assert not bound_by_budget(_record(val=(0.3, 0.6, 0.9), status="diverged"))
    assert not bound_by_budget(_record(val=(0.7,), history=[], epochs_run=0, best_epoch=0, trainable_params=0))


def test_means_of_epochs_keep_their_value_and_carry_their_marks():
    assert [number_text(v) for v in (4.5, 4.0, 50.0, 13 / 3, 0.0)] == ["4.5", "4", "50", "4.33", "0"]
    four, five = (0.3, 0.5, 0.6, 0.9, 0.9, 0.8), (0.3, 0.5, 0.6, 0.7, 0.9, 0.85)  # converge at 4 and 5, best before the end
    records = [
        _record("E2", 0, four), _record("E2", 1, five),  # 4.5, not a half-to-even "4"
        _record("E3", 0, four), _record("E3", 1, five), _record("E3", 2, FLAT),  # not (4 + 5 + 1) / 3
        _record("E4", 0, (0.3, 0.6, 0.9)), _record("E4", 1, five),  # seed 0 might have converged later
        _record("E5", 0, FLAT), _record("E5", 1, FLAT),
    ]  # fmt: skip
    shown = {e: row["Epochs to conv."] for e, row in _rows(records).items()}
    assert shown == {"E2": "4.5", "E3": "4.5; 1/3 not learned", "E4": "≥ 4, budget", "E5": "not learned"}
    summary = summarize(flat_frame(records), [r.key for r in records], records).set_index("experiment")
    assert summary["runs_not_learned"].tolist() == [0, 1, 0, 2]
    assert summary["runs_bound_by_budget"].tolist() == [0, 0, 1, 0]
    assert summary.loc["E3", "epochs_to_converge_mean"] == 4.5 and pd.isna(summary.loc["E5", "epochs_to_converge_mean"])
    old = summarize(flat_frame(records), [r.key for r in records])  # without the records: as before, unmarked
    assert old["epochs_to_converge_mean"].iloc[1] == pytest.approx(10 / 3) and old["runs_not_learned"].isna().all()


def test_the_run_interval_adds_the_seeds_spread_to_one_test_splits_and_keeps_wilsons_width():
    assert run_interval([0.9], TEST) == accuracy_interval(288, TEST)  # one seed: Wilson's, as before
    assert run_interval([0.9, 0.9, 0.9], TEST) == pytest.approx(accuracy_interval(288, TEST))  # no spread: nothing added
    assert run_interval([1.0, 1.0], TEST)[0] == pytest.approx(TEST / (TEST + 1.96**2), abs=1e-4)  # 320 of 320 still allows 98.8 %
    # by hand: Wilson(288, 320) = [0.86224, 0.92827]; t(0.975, 2) s sqrt(1 + 1/3) = 4.3027 * 0.02 * 1.1547 = 0.09937
    low, high = run_interval([0.88, 0.90, 0.92], TEST)
    assert low == pytest.approx(0.9 - (0.03776**2 + 0.09937**2) ** 0.5, abs=2e-4) and high == 1.0
    assert run_interval([0.85, 0.95], TEST) == (0.0, 1.0)  # t(0.975, 1) = 12.7: two seeds that disagree rule out nothing


def test_the_reference_flag_counts_the_seeds_spread():
    reference = {"test_accuracy": 0.97}
    spread = [_record("E2", seed, correct=c, reference=reference) for seed, c in enumerate((272, 304))]  # 0.85 and 0.95
    tight = [_record("E3", seed, correct=c, reference=reference) for seed, c in enumerate((285, 286, 287, 288, 288, 288, 289, 290, 291, 288))]
    records = spread + tight
    summary = summarize(flat_frame(records), [r.key for r in records], records)
    low, high = accuracy_interval(288, TEST)
    assert not low <= 0.97 <= high  # the old flag: one test split's interval around the mean 0.90
    assert summary["ref_outside_interval"].tolist() == [False, True]
    assert (summary["run_interval_low"].iloc[0], summary["run_interval_high"].iloc[0]) == (0.0, 1.0)
    shown = _rows(records)
    assert shown["E2"]["Δ vs ref"] == "-0.070" and shown["E3"]["Δ vs ref"] == "-0.070 (!)"
    assert shown["E2"]["Test acc"] == "0.900 ± 0.071"


def test_cached_rows_show_the_encoding_their_train_time_leaves_out():
    records = [
        _record("E1", 0, cached_features=True, encode_seconds=4.1), _record("E1", 1, cached_features=True, encode_seconds=0.0),
        _record("E2", 0, cached_features=True, encode_seconds=0.0),  # features another experiment encoded
        _record("E3", 0, cached_features=True),  # a record from before encode_seconds: nothing claimed
        _record("E4", 0),  # no cached features
    ]  # fmt: skip
    shown = {e: row["Train time"] for e, row in _rows(records).items()}
    assert shown == {"E1": "2.5 s † (+4.1 s encoding)", "E2": "2.0 s † (encoded earlier)", "E3": "2.0 s †", "E4": "2.0 s"}
    summary = summarize(flat_frame(records), [r.key for r in records], records)
    encode = summary["encode_seconds"].tolist()
    assert encode[:2] == [4.1, 0.0] and pd.isna(encode[2]) and pd.isna(encode[3])
    rows = display_rows(summary)  # E2's "encoded earlier" points to where the encoding was paid
    assert cached_note(summary, rows).endswith("; this run encoded features in E1 (4.1 s)")
    assert cached_note(summary.iloc[[0, 2, 3]], display_rows(summary.iloc[[0, 2, 3]])) == CACHED_NOTE  # nothing to point to
    assert "encode_seconds" not in flat_frame(records)  # in the record, not a results.csv column


def test_the_runner_records_the_encoding_it_paid_for():
    import torch

    from vptbench.data import ImageData, ImageSplit
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.planning import PlannedExperiment
    from vptbench.harness.runner import run_one
    from vptbench.harness.workbench import Workbench
    from vptbench.plugins import load_tuner
    from vptbench.protocol import Task
    from vptbench.registry import Experiment, Training
    from vptbench.testing import tiny_clip

    labels = torch.arange(3).repeat_interleave(10)
    pixels = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    data = ImageData(train=ImageSplit(pixels, labels), test=ImageSplit(pixels[::2], labels[::2]), validation=None, mean=[0.5] * 3, std=[0.25] * 3)
    clip, tokenizer, _ = tiny_clip()
    bench = Workbench(type("M", (), {"clip": clip})(), data, Task(["a", "b", "c"], ["a photo of a {}."], tokenizer), torch.device("cpu"))
    tuner = load_tuner("zero-shot")  # caches features and trains nothing
    plan = PlannedExperiment("E1", Experiment(tuner="zero-shot"), Training(epochs=1, batch_size=8), tuner, tuner.Config())
    first, second = (run_one(bench, plan, seed, QuietObserver()) for seed in (0, 1))
    assert (first.features_from, second.features_from) == ("computed", "memory")
    assert 0 < first.encode_seconds <= first.setup_seconds and second.encode_seconds == 0.0


def _meta(plan):
    return RunManifest.model_validate({
        "schema_version": 1, "suite": "paper", "seeds": [0, 1], "device": "cpu", "status": "finished", "started": "now",
        "config": {"model_name": "m", "dataset_name": "d"}, "environment": {"packages": {}}, "plan": plan,
    })  # fmt: skip


def test_reports_say_what_the_marks_and_val_acc_mean(tmp_path):
    from vptbench.reporting import write_reports

    records = [
        _record("E2", 0, (0.3, 0.6, 0.9), cached_features=True, encode_seconds=4.1),
        _record("E3", 0, FLAT, reference={"test_accuracy": 0.97}), _record("E3", 1, (0.3, 0.9, 0.8), reference={"test_accuracy": 0.97}),
    ]  # fmt: skip
    plan = [r.key for r in records]
    write_reports(tmp_path, _meta(plan), records, ("md", "csv"))
    markdown = (tmp_path / "report.md").read_text()
    summary_section = markdown.split("## Summary")[1].split("## ")[0]
    assert "Val acc: the selected epoch's (the maximum over epochs, optimistic); 96 validation images, one image = 1.04 points." in summary_section
    assert "≥ N, budget: the best validation epoch was the budget's last" in summary_section
    assert "not learned: validation accuracy never beat chance" in summary_section
    assert "| ≥ 3, budget |" in " ".join(summary_section.split()) and "2.0 s † (+4.1 s encoding)" in summary_section
    assert "| 2; 1/2 not learned |" in " ".join(summary_section.split())
    assert "(!) marks a reference value that one run of the experiment could not plausibly have scored" in " ".join(markdown.split())
    rows = {r["experiment"]: r for r in csv.DictReader((tmp_path / "summary.csv").read_text().splitlines())}
    assert (rows["E2"]["val_images"], rows["E2"]["runs_bound_by_budget"], rows["E2"]["runs_not_learned"], rows["E2"]["encode_seconds"]) == ("96", "1", "0", "4.1")
    assert (rows["E3"]["runs_not_learned"], rows["E3"]["epochs_to_converge_mean"], rows["E3"]["encode_seconds"]) == ("1", "2.0", "")


@pytest.mark.parametrize("width", [60, 250])
def test_the_console_table_footnotes_the_columns_it_shows(width):
    from rich.console import Console

    from vptbench.reporting.console import summary_table

    records = [_record("E2", 0, (0.3, 0.6, 0.9)), _record("E3", 0, FLAT)]
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    table = summary_table(records, [r.key for r in records], "Suite", width)
    console.print(table)
    flowing = " ".join(console.export_text().split())
    shown = [column.header for column in table.columns]
    assert ("Val acc: the selected epoch's (the maximum over epochs, optimistic); 96 validation images, one image = 1.04 points" in flowing) == ("Val acc" in shown)
    assert ("Epochs to conv.: ≥ N, budget: the best validation epoch was the budget's last" in flowing) == ("Epochs to conv." in shown)
    assert ("not learned" in flowing) == ("Epochs to conv." in shown)
    assert (width == 250) == ("Val acc" in shown)
