"""Nothing lost: interrupted runs resume to the same numbers, writes are atomic, one writer per run."""

from __future__ import annotations

import json
import os
import socket

import pandas as pd
import pytest

from vptbench.harness import guarded as suite_module
from vptbench.results.io import write_atomic

METRICS = ["experiment", "seed", "status", "test_accuracy", "val_accuracy", "train_accuracy", "best_epoch", "trainable_params"]


def _only_dir(path):
    (run_dir,) = [p for p in path.iterdir() if p.is_dir()]
    return run_dir


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_ctrl_c_keeps_finished_runs_and_resume_matches_an_uninterrupted_run(cli, tiny_config, tmp_path, monkeypatch):
    code, _, _ = cli("run", "--all", "--config", tiny_config, "--output", tmp_path / "clean", "--quiet", "--seeds", "0,1")
    assert code == 0
    clean = pd.read_csv(_only_dir(tmp_path / "clean") / "results.csv")[METRICS]

    real_run_one, calls = suite_module.run_one, []

    def interrupt_second_experiment(bench, plan, seed, observer):
        calls.append((plan.id, seed))
        if plan.id == "E2" and seed == 1:
            raise KeyboardInterrupt
        return real_run_one(bench, plan, seed, observer)

    monkeypatch.setattr(suite_module, "run_one", interrupt_second_experiment)
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path / "broken", "--quiet", "--seeds", "0,1")
    run_dir = _only_dir(tmp_path / "broken")
    assert code == 130 and f"interrupted (Ctrl-C): finished runs are kept in {run_dir}; finish with `vptbench run --resume {run_dir}`" in err
    assert f"Suite 's' — {run_dir}" in out and "1 ok, 1 interrupted" in out  # the summary of what finished
    first = json.loads((run_dir / "run.json").read_text())
    assert first["status"] == "interrupted" and first["resumed"] == []
    partial = pd.read_csv(run_dir / "results.csv")
    assert list(partial["status"]) == ["ok", "ok", "ok", "interrupted"]
    assert not (run_dir / ".lock").exists()

    calls.clear()
    monkeypatch.setattr(suite_module, "run_one", lambda *a: (calls.append((a[1].id, a[2])), real_run_one(*a))[1])
    code, _, err = cli("run", "--resume", run_dir, "--quiet")
    assert code == 0, err
    assert calls == [("E2", 1)]  # only the unfinished pair ran again
    resumed = pd.read_csv(run_dir / "results.csv")[METRICS]
    pd.testing.assert_frame_equal(resumed, clean)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "finished" and meta["started"] == first["started"] and len(meta["resumed"]) == 1
    assert f"- Started {first['started']} (resumed {meta['resumed'][0]})" in (run_dir / "report.md").read_text()


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_tuner_that_raises_fails_alone(cli, tiny_config, tmp_path, monkeypatch):
    real_run_one = suite_module.run_one

    def broken_e1(bench, plan, seed, observer):
        if plan.id == "E1":
            raise RuntimeError("boom\nsecond line")
        return real_run_one(bench, plan, seed, observer)

    monkeypatch.setattr(suite_module, "run_one", broken_e1)
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--json", "--seeds", "0,1")
    assert code == 1 and "E1 seed 1 failed: RuntimeError: boom (traceback in errors.log)" in err
    assert " [2/4] E1 seed 1: failed: RuntimeError: boom (traceback in errors.log)\n" in err  # the log's line, as it happens
    runs = {(r["experiment"], r["seed"]): r for r in json.loads(out)["runs"]}
    assert runs["E1", 0]["status"] == "failed" and runs["E1", 0]["error"] == "RuntimeError: boom (traceback in errors.log)"
    assert runs["E2", 0]["status"] == runs["E2", 1]["status"] == "ok"
    log = (_only_dir(tmp_path) / "errors.log").read_text()
    assert [line for line in log.splitlines() if line.startswith("==")] == ["== E1-seed0", "== E1-seed1"]
    assert log.count("RuntimeError: boom") == 2
    run_dir = _only_dir(tmp_path)
    code, _, err = cli("report", run_dir, "--output", tmp_path / "copy")  # the copy keeps what its records point at
    assert code == 0, err
    (copy,) = (tmp_path / "copy").iterdir()
    assert (copy / "errors.log").read_text() == f"==== from {run_dir}\n{log}"


def test_resume_refuses_other_selection_options(cli, tmp_path):
    code, _, err = cli("run", "E1", "--resume", tmp_path, "--epochs", "3")
    assert code == 2 and "--resume takes the run directory's own configuration; drop experiment ids, --epochs" in err
    code, _, err = cli("run", "--resume", tmp_path, "--output", tmp_path / "elsewhere")
    assert code == 2 and f"--resume writes into '{tmp_path}' itself; drop --output" in " ".join(err.split())


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_report_names_a_missing_folder_a_file_and_a_copy_inside_its_own_run(cli, tiny_config, tmp_path):
    (tmp_path / "file").write_text("")
    for args, expected in (
        (("report", tmp_path / "gone"), f"error: run directory '{tmp_path}/gone' does not exist"),
        (("report", tmp_path / "file"), f"error: run directory '{tmp_path}/file' is a file, not a folder"),
        (("report", "--output", tmp_path / "file"), f"error: --output: '{tmp_path}/file' is a file, not a folder of runs"),
    ):
        code, _, err = cli(*args)
        assert code == 2 and " ".join(err.split()) == expected
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path / "runs", "--quiet")[0] == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    code, _, err = cli("report", run_dir, "--output", tmp_path / "file")  # as `run --output` says it
    assert code == 2 and f"--output: cannot write results to '{tmp_path}/file': '{tmp_path}/file' is a file" in " ".join(err.split())
    code, _, err = cli("report", run_dir, "--output", run_dir / "copies")
    assert code == 2 and f"--output: '{run_dir}/copies' is inside the run directory '{run_dir}'" in " ".join(err.split())
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["history", "runs"]
    code, _, err = cli("report", run_dir, "--output", run_dir)  # the run directory itself: rewritten in place
    assert code == 0 and f"wrote 6 files in {run_dir}: " in " ".join(err.split())
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["history", "runs"]
    code, _, err = cli("report", tmp_path / "runs")  # the folder of runs, not one of them
    expected = f"error: '{tmp_path}/runs' is not a vptbench run directory (no run.json); it holds run directories: name one, such as its latest '{run_dir}'"
    assert code == 2 and " ".join(err.split()) == expected


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_live_lock_refuses_a_second_writer_and_a_stale_one_is_taken_over(cli, tiny_config, tmp_path):
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 0
    run_dir = _only_dir(tmp_path)
    (run_dir / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}")
    code, _, err = cli("run", "--resume", run_dir)
    assert code == 2 and err.strip().startswith("error: ") and "in use by another vptbench run" in err  # the only line: before loading
    for holder in ("", "another-host 1"):  # being written right now; or a process this host cannot see
        (run_dir / ".lock").write_text(holder)
        code, _, err = cli("run", "--resume", run_dir, "--quiet")
        assert code == 2 and "in use by another vptbench run" in err, holder
    (run_dir / ".lock").write_text(f"{socket.gethostname()} 999999999")  # no such process
    code, _, err = cli("run", "--resume", run_dir)
    assert code == 0 and "resuming: 1 finished run kept, 0 to run" in err
    assert not (run_dir / ".lock").exists()


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    import vptbench.results.rundir as results

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    monkeypatch.setattr(results, "datetime", Frozen)
    names = [results.new_run_dir(tmp_path, "demo").name for _ in range(3)]
    assert names == ["demo-20260102-030405", "demo-20260102-030405-2", "demo-20260102-030405-3"]


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    write_atomic(target, "old\n")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new and half written")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


@pytest.mark.slow  # the CLI in a subprocess, killed and resumed
def test_kill_9_leaves_readable_files_and_resume_finishes(cli, tmp_path, tiny_model_dir, image_folder):
    import signal
    import subprocess
    import sys
    import time

    from conftest import tiny_suite_toml

    experiments = (
        '[suites.s.experiments.E1]\ntuner = "zero-shot"\n[suites.s.experiments.E2]\ntuner = "linear-probe"\n'
        '[suites.s.experiments.E3]\ntuner = "vpt-deep"\nparams = { num_tokens = 2 }\n'
    )
    config = tmp_path / "bench.toml"
    config.write_text(tiny_suite_toml(tiny_model_dir, image_folder, experiments, training="epochs = 15, batch_size = 8"))
    command = [sys.executable, "-m", "vptbench.cli", "run", "--all", "--config", str(config), "--output", str(tmp_path / "killed"), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VPTBENCH_EXECUTOR": "process"}  # the default: its child dies with it
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed").glob("*/runs/E1-seed0.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # somewhere in E2 or E3
    process.wait()
    run_dir = _only_dir(tmp_path / "killed")
    assert (run_dir / "runs" / "E1-seed0.json").exists() and not (run_dir / "runs" / "E3-seed0.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # it never got to say otherwise
    for record in (run_dir / "runs").glob("*.json"):
        json.loads(record.read_text())  # every file that exists is whole
    if (run_dir / "results.csv").exists():  # the kill may come before the first report
        assert pd.read_csv(run_dir / "results.csv")["experiment"].tolist()[0] == "E1"
    assert (run_dir / ".lock").exists()  # left by the dead process; the resume takes it over

    code, _, err = cli("run", "--resume", run_dir, "--quiet")
    assert code == 0, err
    assert cli("run", "--all", "--config", config, "--output", tmp_path / "clean", "--quiet")[0] == 0
    resumed = pd.read_csv(run_dir / "results.csv")[METRICS]
    pd.testing.assert_frame_equal(resumed, pd.read_csv(_only_dir(tmp_path / "clean") / "results.csv")[METRICS])


@pytest.mark.slow  # the CLI in a subprocess
def test_sigterm_is_handled_as_ctrl_c_is(tmp_path, tiny_model_dir, image_folder):
    """A scheduler's stop must not leave run.json saying `running` or lose the run in flight."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import tiny_suite_toml

    experiments = '[suites.s.experiments.E1]\ntuner = "zero-shot"\n[suites.s.experiments.E2]\ntuner = "vpt-deep"\nparams = { num_tokens = 2 }\n'
    config = tmp_path / "bench.toml"
    config.write_text(tiny_suite_toml(tiny_model_dir, image_folder, experiments, training="epochs = 20000, batch_size = 8"))
    command = [sys.executable, "-m", "vptbench.cli", "run", "--all", "--config", str(config), "--output", str(tmp_path / "out"), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VPTBENCH_EXECUTOR": "process"}  # the default: the run in flight is in its child
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*/runs/E1-seed0.json")) and time.monotonic() < deadline:  # E1 is recorded
        time.sleep(0.05)
    time.sleep(1)
    process.send_signal(signal.SIGTERM)  # E2 has minutes of epochs left
    _, err = process.communicate(timeout=60)
    run_dir = _only_dir(tmp_path / "out")
    assert process.returncode == 143 and f"terminated (SIGTERM): finished runs are kept in {run_dir}" in err and "Traceback" not in err, err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    record = json.loads((run_dir / "runs" / "E2-seed0.json").read_text())
    assert record["status"] == "interrupted" and record["error"] == "terminated (SIGTERM)"
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_report_names_the_planned_runs_that_have_no_record(cli, tiny_config, tmp_path):
    """After kill -9, or Ctrl-C before later experiments started, their runs are absent, not ok."""
    assert cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--quiet", "--seeds", "0,1")[0] == 0
    run_dir = _only_dir(tmp_path)
    (run_dir / "runs" / "E2-seed1.json").unlink()
    code, out, err = cli("report", run_dir)
    expected = "Not run: E2-seed1 (1 of 4 planned runs have no record; `vptbench run --resume` runs them)"
    assert code == 0 and expected in err and expected in (run_dir / "report.md").read_text()
    statuses = pd.read_csv(run_dir / "summary.csv").set_index("experiment")["status"]
    assert statuses.to_dict() == {"E1": "ok", "E2": "1 ok, 1 not run"} and "1 ok, 1 not run" in out  # not "ok"


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_resume_reruns_failed_runs_and_keeps_good_ones(cli, tiny_config, tmp_path, monkeypatch):
    real_run_one, calls = suite_module.run_one, []

    def flaky_e1(bench, plan, seed, observer):
        if plan.id == "E1":
            raise RuntimeError("flaky")
        return real_run_one(bench, plan, seed, observer)

    monkeypatch.setattr(suite_module, "run_one", flaky_e1)
    assert cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 1
    run_dir = _only_dir(tmp_path)
    monkeypatch.setattr(suite_module, "run_one", lambda *a: (calls.append(a[1].id), real_run_one(*a))[1])
    code, _, err = cli("run", "--resume", run_dir, "--quiet")
    assert code == 0, err
    assert calls == ["E1"] and list(pd.read_csv(run_dir / "results.csv")["status"]) == ["ok", "ok"]


def test_a_resume_interrupted_again_still_reports_the_runs_it_did_not_reach(tiny_config, tmp_path, monkeypatch):
    """Their earlier failed records stay on disk, so the report shows them, not 'Not run'."""
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.planning import plan_experiments, select_suite, suite_plan
    from vptbench.harness.suite import run_suite
    from vptbench.harness.workbench import prepare
    from vptbench.registry import load_registry
    from vptbench.reporting.sink import ReportSink
    from vptbench.results.rundir import load_run_dir

    class InterruptAfterFirst(QuietObserver):
        def run_done(self, record):
            raise KeyboardInterrupt

    registry, path = load_registry(tiny_config)
    name, suite = select_suite(registry, "s")
    plan = suite_plan(registry, path, name, suite, plan_experiments(name, suite, path, ["E1", "E2"]), [0])
    bench = prepare(plan, "cpu")
    real_run_one = suite_module.run_one
    monkeypatch.setattr(suite_module, "run_one", lambda *a: (_ for _ in ()).throw(RuntimeError("flaky")))
    run_suite(plan, bench, tmp_path, QuietObserver(), ReportSink(tmp_path))
    monkeypatch.setattr(suite_module, "run_one", real_run_one)
    with pytest.raises(KeyboardInterrupt):
        run_suite(plan, bench, tmp_path, InterruptAfterFirst(), ReportSink(tmp_path), finished=load_run_dir(tmp_path)[1])
    assert list(pd.read_csv(tmp_path / "results.csv")["status"]) == ["ok", "failed"]
    assert "Not run" not in (tmp_path / "report.md").read_text()


def test_report_leaves_a_run_directory_in_use_alone_and_refuses_a_repeated_one(cli, tiny_config, tmp_path):
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 0
    run_dir = _only_dir(tmp_path)
    (run_dir / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}")  # a live run still writing it
    before = (run_dir / "report.md").read_bytes()
    code, _, err = cli("report", run_dir)
    assert code == 2 and "in use by another vptbench run" in err and (run_dir / "report.md").read_bytes() == before
    for elsewhere in ((run_dir, "--output", tmp_path / "copy"), (run_dir, run_dir.parent / "other", "--output", tmp_path / "combined")):
        code, _, err = cli("report", *elsewhere)  # nor copied or combined as if it were finished
        assert code == 2 and f"'{run_dir}' is in use by another vptbench run" in " ".join(err.split()), err
    assert not (tmp_path / "copy").exists() and not (tmp_path / "combined").exists()
    (run_dir / ".lock").unlink()
    code, _, err = cli("report", run_dir, run_dir, "--output", tmp_path / "combined")
    assert code == 2 and "is named twice; name each run directory once" in err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_resume_and_combining_refuse_weights_or_images_changed_under_the_same_names(cli, tmp_path, tiny_model_dir, image_folder):
    """The names in run.json say nothing of what the folders held: their fingerprints do."""
    import shutil

    import numpy as np
    import torch
    from conftest import tiny_suite_toml
    from PIL import Image
    from transformers import CLIPModel

    model, data = shutil.copytree(tiny_model_dir, tmp_path / "model"), shutil.copytree(image_folder, tmp_path / "data")
    config = tmp_path / "bench.toml"
    config.write_text(tiny_suite_toml(model, data, '[suites.s.experiments.E1]\ntuner = "zero-shot"\n'))

    def run(output):
        code, _, err = cli("run", "--all", "--config", config, "--output", tmp_path / output, "--quiet")
        assert code == 0, err
        return _only_dir(tmp_path / output)

    def refusal(*args):
        code, _, err = cli(*args)
        assert code == 2 and "Traceback" not in err, err
        return " ".join(err.split())

    before = run("before")
    assert set(json.loads((before / "run.json").read_text())["fingerprints"]) == {"model", "dataset", "model_scheme"}
    settings = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**settings, "transformers_version": "4.0.0"}))  # saved by another release
    assert cli("run", "--resume", before, "--quiet")[0] == 0  # nothing that shapes the results changed: it resumes
    image = next((data / "test").glob("*/*.png"))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)  # same name, same class, other pixels
    assert f"cannot resume '{before}': dataset 'colors' (its images or labels, as decoded for the model) changed since it started; start a new run" in refusal("run", "--resume", before)
    clip = CLIPModel.from_pretrained(model)
    with torch.no_grad():
        clip.visual_projection.weight.mul_(-1)  # same shapes, same config
    clip.save_pretrained(model)
    changed = "model 'tiny' (its weights, settings, tokenizer or normalisation) and dataset 'colors' (its images or labels, as decoded for the model)"
    assert f"cannot resume '{before}': {changed} changed since it started" in refusal("run", "--resume", before)
    after = run("after")
    assert f"cannot combine '{before}' and '{after}': {changed} differ between them" in refusal("report", before, after, "--output", tmp_path / "combined")
    assert not (tmp_path / "combined").exists()
    assert cli("report", after, run("again"), "--output", tmp_path / "combined")[0] == 0  # the same weights and images again
    meta = json.loads((before / "run.json").read_text())
    (before / "run.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "fingerprints"}))  # as before fingerprints
    with torch.no_grad():
        clip.visual_projection.weight.mul_(-1)  # the weights `before` ran on
    clip.save_pretrained(model)
    other = run("other")  # compared with `after`, the first directory with fingerprints
    assert f"cannot combine '{after}' and '{other}': model 'tiny' (its weights" in refusal("report", before, after, other, "--output", tmp_path / "c")
    meta = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**meta, "fingerprints": {"model": "0" * 16, "dataset": meta["fingerprints"]["dataset"]}}))
    assert cli("report", other, run("another"), "--output", tmp_path / "c")[0] == 0  # a model hashed the earlier way is not compared
