"""No silent wrong numbers, no suite held hostage: faults a strategy or the machine can throw at a
suite, each recorded as what it was while the other runs go on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from vptbench.harness.observer import QuietObserver
from vptbench.harness.planning import PlannedExperiment, plan_experiments, select_suite, suite_plan
from vptbench.harness.suite import run_suite
from vptbench.harness.workbench import prepare
from vptbench.registry import Experiment, load_registry
from vptbench.reporting.sink import ReportSink


def _suite(config: Path, extra: dict[str, type], experiments=("E2",), seeds=(0,), **training):
    """A plan of the tiny suite's `experiments` and the fault tuners `extra` (id -> class)."""
    registry, path = load_registry(config)
    name, suite = select_suite(registry, "s")
    planned = plan_experiments(name, suite, path, list(experiments), training or None)
    base = planned[0].training
    faulty = [PlannedExperiment(i, Experiment(tuner=t.__name__), base, t, t.Config()) for i, t in extra.items()]
    return suite_plan(registry, path, name, suite, [*faulty, *planned], list(seeds))


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow  # over 1 s: whole runs or plots
def test_logits_that_are_not_numbers_are_never_an_accuracy(tiny_config, tmp_path):
    """Zero-shot of NaN logits was recorded ok at 0.333 (the argmax of NaN); a trained run whose
    evaluations are NaN kept test metrics computed from them."""
    from crashing_tuner import NanTuner, NanWhenEvaluatedTuner

    plan = _suite(tiny_config, {"X1": NanTuner, "X2": NanWhenEvaluatedTuner}, epochs=2)
    result = run_suite(plan, prepare(plan, "cpu"), tmp_path, QuietObserver(), ReportSink(tmp_path))
    records = {r.experiment: r for r in result.records}
    assert records["X1"].status == "failed" and "non-finite logits on the train (" in records["X1"].error
    assert records["X2"].status == "diverged" and "non-finite" in records["X2"].error
    for record in (records["X1"], records["X2"]):
        assert (record.test_accuracy, record.test_macro_f1, record.per_class, record.confusion_matrix) == (None, None, None, None)
    assert records["E2"].status == "ok"
    frame = pd.read_csv(tmp_path / "results.csv").set_index("experiment")
    assert frame.loc[["X1", "X2"], "test_accuracy"].isna().all()


def test_every_json_file_of_a_run_directory_is_strict_json(tiny_config, tmp_path):
    """A bare NaN is not JSON: strict parsers rejected the per-run files."""
    from crashing_tuner import NanWhenEvaluatedTuner

    from vptbench.results.records import RunRecord
    from vptbench.results.rundir import save_run_record

    plan = _suite(tiny_config, {"X2": NanWhenEvaluatedTuner}, epochs=2)
    run_suite(plan, prepare(plan, "cpu"), tmp_path, QuietObserver(), ReportSink(tmp_path))
    record = RunRecord(experiment="E9", tuner="t", seed=0, status="failed", val_loss=math.nan, test_loss=math.inf)
    save_run_record(tmp_path, record)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) >= 5
    for path in files:
        _strict(path.read_text())
    assert _strict((tmp_path / "runs" / "E9-seed0.json").read_text())["val_loss"] is None


def test_reports_are_written_once_however_many_runs(tiny_config, tmp_path, monkeypatch):
    """The plots and Markdown were redrawn after every run: 116 s of report writing at 500 records."""
    import vptbench.reporting.plots as plots

    drawn = []
    real = plots.write_plots
    monkeypatch.setattr(plots, "write_plots", lambda *args: (drawn.append(1), real(*args))[1])
    plan = _suite(tiny_config, {}, experiments=("E1",), seeds=range(4))
    run_suite(plan, prepare(plan, "cpu"), tmp_path, QuietObserver(), ReportSink(tmp_path))
    assert len(drawn) == 1
    frame = pd.read_csv(tmp_path / "results.csv")
    assert frame["seed"].tolist() == [0, 1, 2, 3] and (tmp_path / "report.md").is_file()


def test_a_full_disk_keeps_the_finished_runs_and_says_how_to_resume(cli, tiny_config, tmp_path, monkeypatch):
    """Ctrl-C and SIGTERM gave the resume hint; a full disk ended the run with one line and none."""
    import vptbench.reporting.sink as sink
    from vptbench.errors import WriteError

    real, saved = sink.save_run_record, []

    def fills_the_disk(run_dir, record):
        if saved:  # as write_atomic says it
            raise WriteError(f"cannot write '{run_dir / 'runs' / record.key}.json': No space left on device")
        saved.append(record.key)
        real(run_dir, record)

    monkeypatch.setattr(sink, "save_run_record", fills_the_disk)
    code, _, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--quiet", "--executor", "inline")
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    flowing = " ".join(err.split())
    assert code == 2 and "No space left on device" in flowing
    assert f"the runs finished before it are kept in '{run_dir}': make room, then `vptbench run --resume {run_dir}`" in flowing
    assert saved == ["E1-seed0"] and (run_dir / "runs" / "E1-seed0.json").is_file()


def test_a_stop_names_the_runs_that_never_started(cli, tiny_config, tmp_path, monkeypatch):
    import vptbench.reporting.sink as sink

    real = sink.ReportSink.add

    def stop_after_the_first(self, record):
        real(self, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(sink.ReportSink, "add", stop_after_the_first)
    tiny_config.write_text(tiny_config.read_text() + '[suites.s.experiments.E3]\ntuner = "linear-probe"\n')
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--quiet", "--json", "--executor", "inline")
    assert code == 130
    flowing = " ".join(err.split())
    assert "Not run: E2-seed0, E3-seed0 (2 of 3 planned runs have no record; `vptbench run --resume` runs them)" in flowing
    assert json.loads(out)["not_run"] == ["E2-seed0", "E3-seed0"]


@pytest.mark.slow  # over 1 s: whole runs or plots
def test_resume_can_skip_an_experiment_that_cannot_finish(cli, tiny_config, tmp_path):
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet", "--executor", "inline")[0] == 0
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    (run_dir / "runs" / "E1-seed0.json").unlink()  # as if it hung there and was killed
    code, _, err = cli("run", "--resume", run_dir, "--skip", "E1", "--quiet", "--executor", "inline")
    assert code == 1 and "E1 seed 0 skipped: skipped with --skip" in " ".join(err.split())
    assert pd.read_csv(run_dir / "results.csv")["status"].tolist() == ["skipped"]
    code, _, err = cli("run", "--resume", run_dir, "--skip", "E7", "--quiet")
    assert code == 2 and "--skip: " in err and "Unknown experiment 'E7'" in err
    code, _, err = cli("run", "E1", "--config", tiny_config, "--skip", "E1")
    assert code == 2 and "--skip goes with --resume" in err
    code, _, err = cli("run", "--resume", run_dir, "--quiet", "--executor", "inline")  # without --skip it runs again
    assert code == 0 and pd.read_csv(run_dir / "results.csv")["status"].tolist() == ["ok"]


@pytest.mark.slow  # a child process per crash
def test_a_crash_a_kill_or_a_hang_costs_one_run_and_the_suite_goes_on(tiny_config, tmp_path):
    """Inline, a segfault or the out-of-memory killer ended the whole suite and a hang held it forever."""
    from crashing_tuner import HangingTuner, KilledTuner, SegfaultTuner

    from vptbench.harness.isolation import ProcessExecutor

    plan = _suite(tiny_config, {"X1": SegfaultTuner, "X2": KilledTuner, "X3": HangingTuner}, epochs=2, timeout=20)
    result = run_suite(plan, prepare(plan, "cpu", data_on_device=False), tmp_path, QuietObserver(), ReportSink(tmp_path), executor=ProcessExecutor())
    statuses = {r.experiment: (str(r.status), r.error) for r in result.records}
    assert statuses["X1"] == ("crashed", "its process died of SIGSEGV; the suite went on in a new one")
    assert statuses["X2"][0] == "oom" and "out-of-memory killer" in statuses["X2"][1]
    assert statuses["X3"] == ("timeout", "exceeded its time limit of 20 s and was stopped")
    assert statuses["E2"][0] == "ok"


@pytest.mark.slow  # a child process
def test_the_process_executor_gives_the_numbers_of_the_inline_one(cli, tiny_config, tmp_path):
    columns = ["experiment", "seed", "status", "test_accuracy", "val_accuracy", "train_accuracy", "best_epoch", "epochs_to_converge", "trainable_params"]
    frames = []
    for executor in ("inline", "process"):
        code, _, err = cli("run", "--all", "--config", tiny_config, "--seeds", "0,1", "--output", tmp_path / executor, "--quiet", "--executor", executor)
        assert code == 0, err
        (run_dir,) = (tmp_path / executor).iterdir()
        frames.append(pd.read_csv(run_dir / "results.csv")[columns])
    pd.testing.assert_frame_equal(*frames)


@pytest.mark.slow  # a child process
def test_a_time_limit_holds_for_a_run_that_reports_often_and_starts_when_the_run_does(tiny_config, tmp_path):
    """A linear probe's epochs report many times a second: the limit was checked only in silence.
    The child's start-up (seconds of imports) is not the run's time."""
    from vptbench.harness.isolation import ProcessExecutor

    plan = _suite(tiny_config, {}, experiments=("E1", "E2"), epochs=100_000, timeout=3)
    result = run_suite(plan, prepare(plan, "cpu", data_on_device=False), tmp_path, QuietObserver(), ReportSink(tmp_path), executor=ProcessExecutor())
    assert [(r.experiment, str(r.status)) for r in result.records] == [("E1", "ok"), ("E2", "timeout")]


def test_a_time_limit_needs_the_process_executor(cli, tiny_config):
    code, _, err = cli("run", "E1", "--config", tiny_config, "--timeout", "5", "--executor", "inline")
    assert code == 2 and "--timeout needs --executor process (the inline executor enforces no time limit)" in err
    code, _, err = cli("run", "E1", "--config", tiny_config, "--timeout", "inf", "--executor", "process")
    assert code == 2 and "--timeout: inf is not a finite number of seconds" in err
