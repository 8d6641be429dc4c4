"""Reports: aggregation and intervals against hand-computed values, plots that show something."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vptbench.errors import UsageError
from vptbench.reporting.schema import Report
from vptbench.reporting.tables import accuracy_interval, display_rows, summarize
from vptbench.reporting.tables import flat_frame as _flat_frame
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord


def _record(experiment, seed, correct, total=100, status="ok", reference=None, epochs=3):
    wrong = total - correct
    return {
        "experiment": experiment, "tuner": "linear-probe", "seed": seed, "status": status, "error": "",
        "trainable_params": 10 * (1 + len(experiment)), "total_params": 1000, "trainable_percent": 1.0,
        "train_accuracy": 1.0, "val_accuracy": correct / total, "test_accuracy": correct / total, "test_macro_f1": 0.5,
        "epochs_run": epochs, "best_epoch": epochs, "epochs_to_converge": epochs, "seconds_to_converge": 1.0,
        "setup_seconds": 0.1, "train_seconds": 2.0 + seed, "eval_seconds": 0.1, "images_per_second": 100.0,
        "peak_memory_mb": 50.0 + seed, "memory_kind": "process-peak-rss", "device": "cpu",
        "per_class": [{"class": "a", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": total // 2},
                      {"class": "b", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": total - total // 2}],
        "confusion_matrix": [[correct // 2, wrong // 2], [wrong - wrong // 2, correct - correct // 2]],
        "history": [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "val_loss": 1.2 / e, "val_accuracy": 0.4 + 0.1 * e, "train_seconds": 0.5} for e in range(1, epochs + 1)],
        "params": {}, "reference": reference,
    }  # fmt: skip


def _typed(records):
    return [RunRecord.model_validate(r) for r in records]


def flat_frame(records):
    return _flat_frame(_typed(records))


def write_reports(run_dir, meta, records, *formats):
    from vptbench.reporting import write_reports as write

    return write(run_dir, RunManifest.model_validate(meta), _typed(records), *formats)


def _plan(records):
    return [f"{r['experiment']}-seed{r['seed']}" for r in records]


def test_accuracy_interval_matches_the_normal_approximation_and_keeps_its_width_at_the_extremes():
    low, high = accuracy_interval(288, 320)  # the reference study's test size at 90 %
    half_width = 1.96 * math.sqrt(0.9 * 0.1 / 320)  # 0.0329: the "about ±2.5 to 3 points" readers must see
    assert low == pytest.approx(0.9 - half_width, abs=0.006) and high == pytest.approx(0.9 + half_width, abs=0.006)
    low, high = accuracy_interval(320, 320)  # the study's 100 %: Wilson's bound is z² / (n + z²) below 1
    assert high == 1.0 and low == pytest.approx(320 / (320 + 1.96**2), abs=1e-4)
    assert accuracy_interval(0, 50)[0] == 0.0 and accuracy_interval(0, 50)[1] > 0.05


def test_seeds_aggregate_to_mean_and_sample_std():
    frame = flat_frame([_record("E2", 0, 80), _record("E2", 1, 90), _record("E2", 2, 100), _record("E2", 3, 0, status="failed")])
    row = summarize(frame, [f"E2-seed{seed}" for seed in range(5)]).iloc[0]  # seed 4 never ran
    assert (row["runs"], row["runs_ok"], row["status"]) == (4, 3, "3 ok, 1 failed, 1 not run")
    assert row["test_accuracy_mean"] == pytest.approx(0.9)
    assert row["test_accuracy_std"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    assert row["peak_memory_mb_max"] == 52.0 and row["train_seconds_mean"] == pytest.approx(3.0)
    low, high = accuracy_interval(90, 100)  # one test split of 100 images, seen by every seed
    assert (row["test_accuracy_ci_low"], row["test_accuracy_ci_high"]) == (low, high)


def test_reference_difference_is_flagged_outside_the_interval():
    perfect = _record("E3", 0, 100, reference={"test_accuracy": 0.99})  # 100 of 100 is consistent with 99 %
    records = [_record("E1", 0, 90, reference={"test_accuracy": 1.0}), _record("E2", 0, 90, reference={"test_accuracy": 0.91}), perfect]
    summary = summarize(flat_frame(records), _plan(records))
    assert list(summary["ref_outside_interval"]) == [True, False, False]
    assert summary["ref_difference"].tolist() == pytest.approx([-0.1, -0.01, 0.01])
    shown = display_rows(summary)
    assert shown[0]["Δ vs ref"] == "-0.100 (!)" and shown[1]["Δ vs ref"] == "-0.010"
    assert shown[0]["Test acc"].startswith("0.900 [")


def _meta():
    return {
        "schema_version": 1, "suite": "s", "seeds": [0, 1], "device": "cpu", "status": "finished", "started": "now",
        "config": {"model_name": "m", "dataset_name": "d"}, "environment": {"packages": {}}, "plan": [],
    }  # fmt: skip


def test_the_report_says_when_the_test_split_lacks_a_class(tmp_path):
    record = _record("E2", 0, 90)
    record["per_class"][1]["support"] = 0
    write_reports(tmp_path, _meta(), [record])
    assert "The test split has no image of b: macro-F1 averages over the classes it holds or the model predicts." in (tmp_path / "report.md").read_text()


def test_the_report_warns_of_trainable_parameters_that_never_trained(tmp_path):
    record = {**_record("E2", 0, 90), "trainable_without_gradient": {"count": 20, "tensors": 6, "names": ["a", "b", "c", "d", "e"]}}
    write_reports(tmp_path, _meta(), [record])
    expected = "Warning: 20 of the 30 trainable parameters got no gradient in the first epoch, so they did not train (a, b, c, d, e, …)"
    assert expected in (tmp_path / "report.md").read_text()


def test_a_run_with_no_record_still_reports(tmp_path):
    write_reports(tmp_path, _meta(), [])
    assert "_No run finished._" in (tmp_path / "report.md").read_text()
    assert pd.read_csv(tmp_path / "summary.csv").empty


def test_reports_parse_back_and_plots_are_not_blank(tmp_path):
    records = [_record("E1", 0, 70, epochs=0), _record("E2", 0, 90), _record("E2", 1, 80), _record("E3", 0, 60, epochs=5)]
    written = write_reports(tmp_path, _meta(), records)
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame[["experiment", "seed"]].values.tolist() == [["E1", 0], ["E2", 0], ["E2", 1], ["E3", 0]]
    assert frame["test_accuracy"].tolist() == pytest.approx([0.7, 0.9, 0.8, 0.6])
    assert pd.read_csv(tmp_path / "summary.csv")["experiment"].tolist() == ["E1", "E2", "E3"]
    report = Report.model_validate(json.loads((tmp_path / "report.json").read_text()))
    assert report.runs[1].per_class[0].class_ == "a" and report.schema_version == 1
    markdown = (tmp_path / "report.md").read_text()
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == 4
    for png in pngs:
        assert f"]({png.name})" in markdown
        with Image.open(png) as image:
            image.verify()
        pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
        first_series = np.abs(pixels - np.array([0x1F, 0x77, 0xB4])).sum(axis=-1) < 30  # matplotlib's C0
        assert first_series.sum() > 20, png.name  # data is drawn, not just axes and labels


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_combining_run_directories(cli, tiny_config, tmp_path):
    for seed in ("0", "1"):
        assert cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "runs", "--seeds", seed, "--quiet")[0] == 0
    first, second = sorted((tmp_path / "runs").iterdir())
    assert json.loads((second / "run.json").read_text())["config"]["experiments"]["E2"]["training"]["seeds"] == [1]
    code, _, err = cli("report", first, second, "--output", tmp_path / "combined")
    assert code == 0, err
    (combined,) = (tmp_path / "combined").iterdir()
    frame = pd.read_csv(combined / "results.csv")
    assert frame[["experiment", "seed"]].values.tolist() == [["E2", 0], ["E2", 1]]
    curves = [pd.read_csv(combined / "history" / f"E2-seed{seed}.csv")["train_loss"].tolist() for seed in (0, 1)]
    assert curves[0] != curves[1]  # the seeds really differ (split, initialisation, order)
    markdown = (combined / "report.md").read_text()
    assert "± " in markdown  # two seeds: mean ± std
    assert f"- Combines the runs of `{first}`, `{second}`" in markdown
    metas = [json.loads((d / "run.json").read_text()) for d in (first, second, combined)]
    assert (metas[2]["started"], metas[2]["finished"]) == (metas[0]["started"], metas[1]["finished"])  # the whole span
    code, _, err = cli("run", "--resume", combined)
    assert code == 2 and f"--resume: '{combined}' combines the reports of {first}, {second}; resume one of those" in " ".join(err.split())
    code, _, err = cli("report", first, combined, "--output", tmp_path / "again", "--format", "csv")
    assert code == 0 and f"E2-seed0 is in {first} and {combined}: the one in {combined} is reported" in " ".join(err.split())
    (second / "runs" / "E2-seed1.json").write_text("{")  # cut short: left out, and said so
    assert cli("report", first, second, "--output", tmp_path / "third", "--format", "md")[0] == 0
    (third,) = (tmp_path / "third").iterdir()
    markdown = (third / "report.md").read_text()
    assert f"- Damaged record, left out: `{second}/runs/E2-seed1.json` (Expecting property name" in markdown
    assert "**Not run: E2-seed1 (1 of 2 planned runs have no record; `vptbench run --resume` on the directory that ran them, then report again)" in markdown
    shutil.move(second, tmp_path / "moved")  # reporting the copy again: the source's damage is in report.md, not news
    code, _, err = cli("report", third)
    assert code == 0 and "damaged record" not in err and "- Damaged record, left out" in (third / "report.md").read_text()


def test_combining_keeps_a_good_run_over_a_failed_one_and_refuses_other_suites(tmp_path):
    from vptbench.results.combine import combine_run_dirs
    from vptbench.results.io import write_json
    from vptbench.results.rundir import RUN_FILE, save_run_record

    meta = {**_meta(), "config": {**_meta()["config"], "experiments": {}}, "plan": ["E2-seed0"]}
    failed = {key: _record("E2", 0, 0)[key] for key in ("experiment", "tuner", "seed", "params", "reference")} | {"status": "failed", "error": "boom"}
    for name, record in (("good", _record("E2", 0, 90)), ("bad", failed)):
        write_json(tmp_path / name / RUN_FILE, meta)
        save_run_record(tmp_path / name, RunRecord.model_validate(record))
    for order in (["good", "bad"], ["bad", "good"]):
        combined, records = combine_run_dirs([tmp_path / name for name in order])
        assert [(r.status, r.test_accuracy) for r in records] == [("ok", 0.9)]
        assert [o.model_dump(by_alias=True) for o in combined.overlapping_runs] == [{"run": "E2-seed0", "reported": str(tmp_path / "good"), "in": [str(tmp_path / name) for name in order]}]
    write_json(tmp_path / "better" / RUN_FILE, meta)
    save_run_record(tmp_path / "better", RunRecord.model_validate(_record("E2", 0, 95)))
    combined, records = combine_run_dirs([tmp_path / "good", tmp_path / "better"])  # two good ones: the later
    assert records[0].test_accuracy == 0.95 and combined.overlapping_runs[0].reported == str(tmp_path / "better")
    combined, _ = combine_run_dirs([tmp_path / "good", tmp_path / "better", tmp_path / "bad"])  # listed once, with every place
    assert [o.model_dump(by_alias=True) for o in combined.overlapping_runs] == [{"run": "E2-seed0", "reported": str(tmp_path / "better"), "in": [str(tmp_path / n) for n in ("good", "better", "bad")]}]
    write_json(tmp_path / "other" / RUN_FILE, {**meta, "suite": "other"})
    with pytest.raises(UsageError, match="cannot combine runs of different suites: other, s"):
        combine_run_dirs([tmp_path / "good", tmp_path / "other"])
    for name in ("small", "bigger"):
        write_json(tmp_path / name / RUN_FILE, {**meta, "config": {**meta["config"], "model_name": name}})
    with pytest.raises(UsageError, match=r"they ran with different model \('small' and 'bigger'\)"):
        combine_run_dirs([tmp_path / "small", tmp_path / "bigger"])


def test_combining_keeps_a_diverged_run_over_one_cut_short(tmp_path):
    """A diverged run finished, with its curves; an interrupted one measured nothing."""
    from vptbench.results.combine import combine_run_dirs
    from vptbench.results.io import write_json
    from vptbench.results.rundir import RUN_FILE, save_run_record

    meta = {**_meta(), "config": {**_meta()["config"], "experiments": {}}, "plan": ["E2-seed0"]}
    diverged = _record("E2", 0, 10, status="diverged")
    interrupted = {key: diverged[key] for key in ("experiment", "tuner", "seed", "params", "reference")} | {"status": "interrupted", "error": ""}
    for name, record in (("diverged", diverged), ("interrupted", interrupted)):
        write_json(tmp_path / name / RUN_FILE, meta)
        save_run_record(tmp_path / name, RunRecord.model_validate(record))
    for order in (["diverged", "interrupted"], ["interrupted", "diverged"]):
        _, records = combine_run_dirs([tmp_path / name for name in order])
        assert [r.status for r in records] == ["diverged"]


def test_combining_ignores_where_a_local_model_folder_sits_but_not_which_model_it_is(tmp_path):
    """Another checkout, another machine, or a run recorded with a relative path: the same model."""
    from vptbench.results.combine import combine_run_dirs
    from vptbench.results.io import write_json
    from vptbench.results.rundir import RUN_FILE

    def model(**spec):
        return {"config": {**_meta()["config"], "model": {"source": "local", **spec}, "experiments": {}}}

    for name, spec in (("old", {"path": "../tiny"}), ("new", {"path": "/work/tiny"}), ("other", {"path": "/work/tiny", "attn_implementation": "eager"})):
        write_json(tmp_path / name / RUN_FILE, {**_meta(), **model(**spec)})
    assert combine_run_dirs([tmp_path / "old", tmp_path / "new"])[0].status == "combined"
    with pytest.raises(UsageError, match=r"they ran with different model \(both named 'm', declared differently\)"):
        combine_run_dirs([tmp_path / "new", tmp_path / "other"])


def test_combining_compares_each_experiment_with_whichever_directory_ran_it_first(tmp_path):
    """The first directory need not have run every experiment: two later ones that ran E2
    differently are still refused, and the message names those two."""
    from vptbench.results.combine import combine_run_dirs
    from vptbench.results.io import write_json
    from vptbench.results.rundir import RUN_FILE

    def experiments(**by_id):
        return {"config": {**_meta()["config"], "experiments": {e: {"tuner": "linear-probe", "training": {"lr": lr}} for e, lr in by_id.items()}}}

    for name, config in (("a", experiments(E1=1e-3)), ("b", experiments(E2=1e-3)), ("c", experiments(E2=1e-4))):
        write_json(tmp_path / name / RUN_FILE, {**_meta(), **config})
    with pytest.raises(UsageError, match=f"cannot combine '{tmp_path / 'b'}' and '{tmp_path / 'c'}': they ran with different settings of E2 \\(training.lr\\)"):
        combine_run_dirs([tmp_path / name for name in "abc"])
    combined, _ = combine_run_dirs([tmp_path / "a", tmp_path / "b"])
    assert list(combined.config.experiments) == ["E1", "E2"]


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_the_terminal_summary_never_wraps_a_number_and_names_what_it_leaves_out(width):
    from rich.console import Console

    from vptbench.reporting.console import summary_table

    records = [{**_record("E2", 0, 90), "cached_features": True}, _record("E6-full-finetune", 0, 95)]
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    table = summary_table(_typed(records), _plan(records), "Suite", width)
    console.print(table)
    text = console.export_text()
    shown = [column.header for column in table.columns]
    assert shown[0] == "Experiment" and "Test acc" in shown
    assert all(len(line) <= width for line in text.splitlines())
    for row in display_rows(summarize(flat_frame(records), _plan(records))):
        for column in shown:
            assert row[column] in text, (column, row[column])  # every shown cell whole, on one line
    hidden = [column for column in display_rows(summarize(flat_frame(records), _plan(records)))[0] if column not in shown]
    flowing = " ".join(text.split())
    assert ("Left out at this width: " + ", ".join(hidden) + " (see report.md)" in flowing) == bool(hidden)
    assert ("† trains a head on frozen features" in flowing) == ("Train time" in shown)
    assert (width >= 200) == (not hidden)


def test_markdown_keeps_the_displayed_digits_and_marks_cached_rows(tmp_path):
    records = [{**_record("E2", 0, 90), "cached_features": True}]
    meta = {"schema_version": 1, "suite": "s", "config": {"model_name": "m", "dataset_name": "d"}, "seeds": [0], "plan": ["E2-seed0"], "device": "cpu", "environment": {}, "status": "finished"}
    write_reports(tmp_path, meta, records)
    markdown = (tmp_path / "report.md").read_text()
    assert "|     0.900 |" in markdown and "2.0 s † |" in markdown and "† trains a head on frozen features" in markdown


def test_a_diverged_experiment_still_shows_its_trainable_parameters(tmp_path):
    diverged = _record("E3", 0, 25, status="diverged")
    failed = {key: diverged[key] for key in ("experiment", "tuner", "status", "error", "params", "reference")} | {"experiment": "E4", "seed": 0, "status": "failed"}
    shown = {row["Experiment"]: row for row in display_rows(summarize(flat_frame([diverged, failed]), ["E3-seed0", "E4-seed0"]))}
    assert shown["E3"]["Trainable"] == "30 (1.00 %)" and shown["E3"]["Test acc"] == "–"
    assert shown["E4"]["Trainable"] == "–"
    write_reports(tmp_path, _meta(), [diverged, failed])  # an experiment with no count at all: blank, not NaN
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert [(r["experiment"], r["trainable_params"], r["runs_ok"]) for r in rows] == [("E3", "30", "0"), ("E4", "", "0")]


def test_a_one_epoch_linear_probe_keeps_its_cached_features_mark():
    """Its only epoch is warm-up, so it has no images/s; its train time still excludes the encoding."""
    probe = {**_record("E2", 0, 90, epochs=1), "cached_features": True, "images_per_second": None}
    zero_shot = {**_record("E1", 0, 70), "trainable_params": 0, "cached_features": True, "images_per_second": None}
    rows = display_rows(summarize(flat_frame([zero_shot, probe]), ["E1-seed0", "E2-seed0"]))
    assert [(row["Train time"], row["Images/s"]) for row in rows] == [("–", "–"), ("2.0 s †", "–")]


def test_a_strategy_that_trains_nothing_shows_no_train_time():
    zero_shot = {**_record("E1", 0, 70), "trainable_params": 0, "train_seconds": 0.0, "images_per_second": None, "epochs_to_converge": None}
    (shown,) = display_rows(summarize(flat_frame([zero_shot]), ["E1-seed0"]))
    assert (shown["Train time"], shown["Images/s"], shown["Epochs to conv."]) == ("–", "–", "–")


@pytest.mark.parametrize(("device", "noted"), [("cuda (NVIDIA H200)", True), ("cpu", False)])
def test_a_cuda_report_says_its_numbers_are_not_bit_reproducible(tmp_path, device, noted):
    meta = {"schema_version": 1, "suite": "s", "config": {"model_name": "m", "dataset_name": "d"}, "seeds": [0], "plan": ["E2-seed0"], "device": device, "environment": {}, "status": "finished"}
    write_reports(tmp_path, meta, [_record("E2", 0, 90)])
    assert ("not always bit-identical" in (tmp_path / "report.md").read_text()) is noted


@pytest.mark.slow  # over 1 s at one thread: three reports with plots
def test_each_experiment_states_how_it_was_trained(tmp_path):
    training = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 5, "precision": "auto", "compile": True}
    experiments = {"E1": {"tuner": "zero-shot", "training": training}, "E2": {"tuner": "linear-probe", "training": {**training, "compile": False}}}
    meta = {"schema_version": 1, "suite": "s", "config": {"model_name": "m", "dataset_name": "d", "experiments": experiments}, "seeds": [0], "plan": ["E1-seed0", "E2-seed0"], "device": "cpu", "environment": {}, "status": "finished"}
    untrained = {**_record("E1", 0, 70, epochs=0), "trainable_params": 0, "precision": "fp32"}
    stopped_early = {**_record("E2", 0, 90, epochs=3), "precision": "bf16"}
    write_reports(tmp_path, meta, [untrained, stopped_early])
    markdown = (tmp_path / "report.md").read_text()
    lines = [line for line in markdown.splitlines() if line.startswith("Training:")]
    assert lines == ["Training: none, nothing is trainable; evaluated in fp32, compiled", "Training: adam lr 0.001, batch 32, 5 epochs (ran 3), bf16, eager"]
    assert "- Seeds 0; model `m`" in markdown
    one_epoch = {"experiments": {**experiments, "E2": {"tuner": "linear-probe", "training": {**training, "epochs": 1}}}}
    write_reports(tmp_path, {**meta, "config": {**meta["config"], **one_epoch}}, [untrained, {**stopped_early, "epochs_run": 1}])
    assert "Training: adam lr 0.001, batch 32, 1 epoch, bf16, compiled" in (tmp_path / "report.md").read_text()  # not "1 epochs"
    write_reports(tmp_path, {**meta, "seeds": [0, 1]}, [untrained, {**stopped_early, "seed": 1}])
    assert "- Seeds E1: 0; E2: 1; model `m`" in (tmp_path / "report.md").read_text()  # not "Seeds 0, 1" for both


@pytest.mark.parametrize("width", [60, 80, 160])
def test_the_throughput_table_never_wraps_a_number_either(width):
    from rich.console import Console

    from vptbench.reporting.console import throughput_table

    row = {"experiment": "E4", "tuner": "vpt-deep", "mode": "train", "trainable_params": 11_268, "step_ms": 3151.25, "images_per_second": 2.54,
           "gflops_per_image": 67.5, "achieved_tflops": 0.171, "mfu": 0.0173, "peak_memory_mb": 2928.4}  # fmt: skip
    failed = {"experiment": "E6", "tuner": "full-finetune", "error": "CUDA out of memory"}
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    table = throughput_table([row, failed], "Throughput", width, "989")
    console.print(table)
    text = console.export_text()
    flowing = " ".join(text.split())
    shown = [column.header for column in table.columns]
    assert all(len(line) <= width for line in text.splitlines()) and {"Experiment", "Images/s", "Status"} <= set(shown)
    for column, cell in {"Trainable": "11,268", "Step": "3151.2 ms", "Images/s": "2.5", "MFU": "1.7 %", "Peak mem": "2,928 MiB"}.items():
        assert (cell in text) == (column in shown), column
    assert " failed " in flowing and "MFU against a dense peak of 989 TFLOP/s" in flowing
    assert ("Left out at this width" in flowing) == (width < 160)
