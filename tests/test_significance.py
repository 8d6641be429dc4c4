"""Which differences are real: McNemar's test, the paired bootstrap, the permutation test and Holm's
correction against values computed by hand, and the report's section, CSV and JSON read back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from vptbench.reporting.significance import COLUMNS, compare, holm, mcnemar_p, pairwise
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord


def _record(experiment, seed, predictions, labels, tuner="linear-probe", **extra):
    """An ok run whose test predictions are `predictions` (two classes, 0 and 1)."""
    predictions, labels = list(predictions), list(labels)
    confusion = [[sum(1 for p, y in zip(predictions, labels, strict=True) if y == t and p == q) for q in (0, 1)] for t in (0, 1)]
    accuracy = sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)
    return RunRecord.model_validate({
        "experiment": experiment, "tuner": tuner, "seed": seed, "status": "ok", "trainable_params": 10, "total_params": 100, "trainable_percent": 10.0,
        "val_accuracy": accuracy, "test_accuracy": accuracy, "test_macro_f1": accuracy, "train_seconds": 1.0,
        "per_class": [{"class": c, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": labels.count(i)} for i, c in enumerate("ab")],
        "confusion_matrix": confusion, "history": [], "test_predictions": predictions, "test_labels": labels, **extra,
    })  # fmt: skip


def _right(correct):
    """Predictions for labels of class 0: right (0) where `correct` is 1, wrong (1) elsewhere."""
    return [0 if c else 1 for c in correct]


def _strategy(experiment, correct_per_seed, tuner="linear-probe"):
    """One record per seed; `correct_per_seed`: per seed, per image, 1 where it is right."""
    return [_record(experiment, seed, _right(correct), [0] * len(correct), tuner) for seed, correct in enumerate(correct_per_seed)]


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_images():
    # 5 images both right, 2 only A right, 9 only B right, 4 neither: exact p = 2 · P(X ≤ 2), X ~ Binomial(11, 1/2)
    a = np.array([1] * 5 + [1] * 2 + [0] * 9 + [0] * 4, dtype=bool)
    b = np.array([1] * 5 + [0] * 2 + [1] * 9 + [0] * 4, dtype=bool)
    by_hand = 2 * (1 + 11 + 55) / 2**11  # C(11,0) + C(11,1) + C(11,2) = 67; 134 / 2048
    assert by_hand == 0.0654296875
    assert mcnemar_p(a, b) == pytest.approx(by_hand, rel=1e-12)
    (row,) = pairwise([*_strategy("E1", [b]), *_strategy("E2", [a])]).to_dict("records")
    assert (row["experiment_a"], row["experiment_b"], row["test"], row["test_images"]) == ("E2", "E1", "mcnemar_exact", 20)
    assert (row["accuracy_a"], row["accuracy_b"]) == (7 / 20, 14 / 20)
    assert row["difference_points"] == pytest.approx(-35.0) and row["p_value"] == pytest.approx(by_hand, rel=1e-12)
    assert row["p_holm"] == row["p_value"] and not row["significant"]  # one comparison: nothing to correct


@pytest.mark.parametrize("seeds", [1, 3])
def test_identical_predictions_differ_by_nothing(seeds):
    correct = [[1, 0, 1, 1, 0, 1]] * seeds
    (row,) = pairwise(_strategy("E1", correct) + _strategy("E2", correct)).to_dict("records")
    assert row["test"] == ("mcnemar_exact" if seeds == 1 else "permutation") and row["seeds_paired"]
    assert (row["difference_points"], row["ci_low_points"], row["ci_high_points"]) == (0.0, 0.0, 0.0)
    assert row["p_value"] == 1.0 and not row["significant"]


def test_one_strategy_right_where_the_other_is_wrong_differs_by_100_points():
    # 4 images, 2 seeds each: every resample gives +100; the exact permutation test (2^4 = 16 sign
    # patterns of the per-image differences, all +1) finds the observed mean only under the identity:
    # two-sided p = 2 · 1/16
    (row,) = pairwise(_strategy("E1", [[0] * 4] * 2) + _strategy("E2", [[1] * 4] * 2)).to_dict("records")
    assert (row["difference_points"], row["ci_low_points"], row["ci_high_points"]) == (100.0, 100.0, 100.0)
    assert row["test"] == "permutation" and row["p_value"] == pytest.approx(0.125)
    (one_seed,) = pairwise(_strategy("E1", [[0] * 4]) + _strategy("E2", [[1] * 4])).to_dict("records")
    assert one_seed["difference_points"] == 100.0 and one_seed["p_value"] == pytest.approx(2 / 2**4)  # McNemar: 4 against 0


def test_the_percentile_interval_of_a_small_case():
    # A right on all 4 images, B on the last only: per-image differences 1, 1, 1, 0 (mean 75 points).
    # A resample of the 4 images has mean k/4, k ~ Binomial(4, 3/4): P(k = 0) = 1/256 ≈ 0.4 %,
    # P(k ≤ 1) = 13/256 ≈ 5.1 %, P(k = 4) = 81/256 ≈ 32 %; so the 2.5 % quantile is 1/4 and the
    # 97.5 % quantile 1, with 9,999 resamples far from either edge.
    (row,) = pairwise(_strategy("E1", [[0, 0, 0, 1]]) + _strategy("E2", [[1, 1, 1, 1]])).to_dict("records")
    assert (row["difference_points"], row["ci_low_points"], row["ci_high_points"]) == (75.0, 25.0, 100.0)
    assert row["p_value"] == pytest.approx(2 / 2**3)  # McNemar: 3 against 0


def test_seeds_are_resampled_each_strategys_own_when_they_differ():
    # E1 ran seeds 0 and 1 with the same predictions, E2 only seed 0, the same again: still nothing
    records = _strategy("E1", [[1, 0, 1, 0]] * 2) + _strategy("E2", [[1, 0, 1, 0]])
    (row,) = pairwise(records).to_dict("records")
    assert (row["runs_a"], row["runs_b"], row["seeds_paired"], row["test"]) == (1, 2, False, "permutation")
    assert (row["difference_points"], row["ci_low_points"], row["ci_high_points"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    # two seeds that disagree: the difference is of the means over seeds, the interval carries the seeds' spread
    records = _strategy("E1", [[0, 0, 0, 0]]) + _strategy("E2", [[1, 1, 0, 0], [1, 1, 1, 1]])
    (row,) = pairwise(records).to_dict("records")
    assert row["difference_points"] == 75.0 and row["ci_low_points"] < 75.0 and row["ci_high_points"] == 100.0


def test_holm_multiplies_the_sorted_p_values_by_the_tests_left_and_keeps_them_increasing():
    # sorted 0.01, 0.03, 0.04: 3 · 0.01 = 0.03; max(0.03, 2 · 0.03) = 0.06; max(0.06, 1 · 0.04) = 0.06
    corrected, significant = holm([0.01, 0.04, 0.03])
    assert corrected == pytest.approx([0.03, 0.06, 0.06]) and significant == [True, False, False]


def _three():
    """E2 right on 10 more images than E1, E3 on 5 more than E1 and 5 fewer than E2 (20 images)."""
    e1, e2, e3 = [0] * 10 + [1] * 10, [1] * 20, [1] * 5 + [0] * 5 + [1] * 10
    return _strategy("E1", [e1], "zero-shot") + _strategy("E2", [e2]) + _strategy("E3", [e3], "vpt-deep")


def test_pairs_in_plan_order_with_holm_over_all_of_them():
    frame = pairwise(_three())
    assert list(frame.columns) == COLUMNS
    assert frame[["experiment_a", "experiment_b"]].values.tolist() == [["E2", "E1"], ["E3", "E1"], ["E3", "E2"]]
    assert frame["difference_points"].tolist() == pytest.approx([50.0, 25.0, -25.0])
    # McNemar: 10 against 0, 5 against 0, 0 against 5: p = 2/2^10, 2/2^5, 2/2^5
    assert frame["p_value"].tolist() == pytest.approx([2 / 1024, 1 / 16, 1 / 16])
    # Holm: 3 · 2/1024; max(that, 2 · 1/16) = 1/8; max(1/8, 1 · 1/16) = 1/8
    assert frame["p_holm"].tolist() == pytest.approx([6 / 1024, 1 / 8, 1 / 8])
    assert frame["significant"].tolist() == [True, False, False]
    reversed_plan = [f"E{i}-seed0" for i in (3, 2, 1)]
    assert pairwise(_three(), reversed_plan)[["experiment_a", "experiment_b"]].values.tolist() == [["E2", "E3"], ["E1", "E3"], ["E1", "E2"]]


def test_strategies_on_other_images_or_without_predictions_are_not_compared():
    old = _record("E4", 0, [0] * 20, [0] * 20).model_copy(update={"test_predictions": None, "test_labels": None})
    other = _strategy("E5", [[1] * 12])  # another test split: 12 images
    failed = RunRecord(experiment="E6", tuner="linear-probe", seed=0, status="failed", error="boom")
    result = compare([*_three(), old, *other, failed])
    assert len(result.pairs) == 3
    assert result.not_compared == {
        "E4": "1 of its 1 ok runs hold no per-image test predictions (records written before vptbench kept them)",
        "E5": "tested on other images (12) than the others: a paired comparison needs the same images",
    }
    assert pairwise(_strategy("E1", [[1, 0]]) + [old]).empty


def _meta(records):
    return RunManifest.model_validate({
        "schema_version": 1, "suite": "s", "seeds": [0], "device": "cpu", "status": "finished", "started": "now",
        "config": {"model_name": "m", "dataset_name": "d"}, "environment": {"packages": {}}, "plan": [r.key for r in records],
    })  # fmt: skip


@pytest.mark.slow  # over 1 s: whole runs or plots
def test_the_report_says_which_differences_are_real_and_writes_them_down(tmp_path):
    from vptbench.reporting import write_reports
    from vptbench.reporting.schema import Report

    records = _three()
    write_reports(tmp_path, _meta(records), records)
    expected = pairwise(records)
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Which differences are real") < markdown.index("## Per experiment")
    low, high = expected.loc[0, "ci_low_points"], expected.loc[0, "ci_high_points"]
    assert f"- **E2 (linear-probe) vs E1 (zero-shot): +50.0 points [{low:.1f}, {high:.1f}], p = 0.002 (Holm 0.006) — significant**" in markdown
    low, high = expected.loc[2, "ci_low_points"], expected.loc[2, "ci_high_points"]
    assert f"- E3 (vpt-deep) vs E2 (linear-probe): -25.0 points [{low:.1f}, {high:.1f}], p = 0.062 (Holm 0.125)\n" in markdown
    assert "McNemar's exact test" in markdown and "for the 3 comparisons made here" in markdown
    parsed = pd.read_csv(tmp_path / "significance.csv")
    pd.testing.assert_frame_equal(parsed, expected, check_dtype=False)
    data = json.loads((tmp_path / "report.json").read_text())
    pd.testing.assert_frame_equal(pd.DataFrame(data["significance"]["pairs"]), expected, check_dtype=False)
    assert Report.model_validate(data).significance["alpha"] == 0.05

    alone = _strategy("E1", [[1, 0]])  # fewer than two comparable strategies: no section, no file, no key
    write_reports(tmp_path, _meta(alone), alone)
    assert "Which differences are real" not in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "significance.csv").exists()
    assert "significance" not in json.loads((tmp_path / "report.json").read_text())


def test_a_search_trial_holds_no_test_predictions():
    trial = {"experiment": "E2", "tuner": "linear-probe", "seed": 0, "trial": 3, "status": "failed", "error": "boom"}
    with pytest.raises(ValidationError, match=r"a search trial holds test numbers \(test_predictions, test_labels\)"):
        RunRecord.model_validate({**trial, "test_predictions": [0, 1], "test_labels": [0, 0]})
    with pytest.raises(ValidationError, match="test_predictions and test_labels come together, one per test image"):
        RunRecord.model_validate({**trial, "trial": None, "test_predictions": [0, 1], "test_labels": [0]})


def test_a_run_keeps_its_test_predictions_in_the_test_splits_order():
    from vptbench.data import ImageData, ImageSplit
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.planning import PlannedExperiment
    from vptbench.harness.runner import run_one
    from vptbench.harness.workbench import Workbench
    from vptbench.plugins import load_tuner
    from vptbench.protocol import Task
    from vptbench.registry import Experiment, Training
    from vptbench.testing import tiny_clip

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(20)
    pixels = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=generator, dtype=torch.uint8)
    pixels[:, 0] = (labels * 100).view(-1, 1, 1).to(torch.uint8)
    test = ImageSplit(pixels[::2], labels[::2])
    data = ImageData(train=ImageSplit(pixels, labels), test=test, validation=None, mean=[0.5] * 3, std=[0.25] * 3)
    clip, tokenizer, _ = tiny_clip()
    bench = Workbench(type("M", (), {"clip": clip})(), data, Task(["a", "b", "c"], ["a photo of a {}."], tokenizer), torch.device("cpu"))
    tuner = load_tuner("linear-probe")
    plan = PlannedExperiment("E2", Experiment(tuner="linear-probe"), Training(epochs=2, batch_size=8), tuner, tuner.Config())
    record = run_one(bench, plan, 0, QuietObserver())
    assert record.status == "ok" and record.test_labels == test.labels.tolist()
    assert record.test_predictions is not None and len(record.test_predictions) == record.test_total == 30
    right = sum(p == y for p, y in zip(record.test_predictions, record.test_labels, strict=True))
    assert right == record.test_correct and right / 30 == record.test_accuracy
