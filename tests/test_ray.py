"""The Ray executor on a local Ray instance the test starts itself: same run directory, same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # a local Ray cluster takes seconds to start and to run on

COLUMNS = ["experiment", "seed", "status", "test_accuracy", "val_accuracy", "best_epoch", "trainable_params"]


@pytest.fixture(scope="module")
def local_ray():
    # workers import tests/crashing_tuner.py like a plugin, so the tests folder is on their path
    runtime_env = {"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
    yield
    ray.shutdown()


def _results(path):
    (run_dir,) = path.iterdir()
    return run_dir, pd.read_csv(run_dir / "results.csv")[COLUMNS]


def test_ray_executor_matches_the_local_executor(local_ray, cli, tiny_config, tmp_path):
    config = tiny_config.read_text() + '[suites.s.experiments.E3]\ntuner = "vpt-deep"\nparams = { num_tokens = 2 }\n'
    tiny_config.write_text(config)
    args = ("run", "--all", "--config", tiny_config, "--seeds", "0,1", "--quiet", "--device", "cpu")
    code, _, err = cli(*args, "--output", tmp_path / "local")
    assert code == 0, err
    code, _, err = cli(*args, "--output", tmp_path / "ray", "--executor", "ray")
    assert code == 0, err
    _, local = _results(tmp_path / "local")
    run_dir, distributed = _results(tmp_path / "ray")
    pd.testing.assert_frame_equal(distributed, local)
    assert (run_dir / "report.md").is_file() and not (run_dir / ".lock").exists()


def test_unknown_executor_is_a_usage_error(cli, tiny_config):
    code, _, err = cli("run", "--all", "--config", tiny_config, "--executor", "dask")
    assert code == 2 and "--executor (or VPTBENCH_EXECUTOR): 'dask' is not one of process, inline, ray" in err


def test_a_task_whose_worker_dies_is_retried_then_failed(local_ray, tiny_config, tmp_path):
    from crashing_tuner import DyingTuner

    from vptbench.harness.executors import RayExecutor
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.planning import PlannedExperiment, plan_experiments, select_suite, suite_plan
    from vptbench.harness.suite import run_suite
    from vptbench.harness.workbench import prepare
    from vptbench.registry import Experiment, load_registry
    from vptbench.reporting.sink import ReportSink

    registry, path = load_registry(tiny_config)
    name, suite = select_suite(registry, "s")
    (fine,) = plan_experiments(name, suite, path, ["E2"])
    dying = PlannedExperiment("X1", Experiment(tuner="dying"), fine.training, DyingTuner, DyingTuner.Config())
    plan = suite_plan(registry, path, name, suite, [dying, fine], [0])
    bench = prepare(plan, "cpu")
    result = run_suite(plan, bench, tmp_path, QuietObserver(), ReportSink(tmp_path), executor=RayExecutor(None, "cpu", max_retries=1))
    statuses = {r.experiment: (r.status, r.error) for r in result.records}
    assert statuses["E2"][0] == "ok"
    assert statuses["X1"][0] == "failed" and "Ray task failed after 1 retries" in statuses["X1"][1]


def test_ctrl_c_cancels_what_is_still_on_the_cluster_and_records_it(local_ray, tiny_config, tmp_path, monkeypatch):
    """The interrupt lands in the suite's own code (saving a record), not in Ray's wait: the tasks
    still outstanding must be cancelled and recorded as interrupted all the same."""
    from vptbench.harness.executors import RayExecutor
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.planning import plan_experiments, select_suite, suite_plan
    from vptbench.harness.suite import run_suite
    from vptbench.harness.workbench import prepare
    from vptbench.registry import load_registry
    from vptbench.reporting.sink import ReportSink

    class InterruptAfterFirst(QuietObserver):
        def run_done(self, record):
            raise KeyboardInterrupt

    cancelled = []
    real_cancel = ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: (cancelled.append(ref), real_cancel(ref, **kw))[1])
    registry, path = load_registry(tiny_config)
    name, suite = select_suite(registry, "s")
    plan = suite_plan(registry, path, name, suite, plan_experiments(name, suite, path, ["E1", "E2"]), [0, 1, 2])
    with pytest.raises(KeyboardInterrupt):
        run_suite(plan, prepare(plan, "cpu"), tmp_path, InterruptAfterFirst(), ReportSink(tmp_path), executor=RayExecutor(None, "cpu"))
    statuses = sorted(json.loads(p.read_text())["status"] for p in (tmp_path / "runs").glob("*.json"))
    assert statuses.count("interrupted") == len(cancelled) == 6 - statuses.count("ok") and "ok" in statuses
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted"


def test_an_address_nothing_answers_fails_before_any_work(cli, tiny_config, tmp_path):
    """Ray itself would retry for minutes; a plain connection attempt is refused at once."""
    code, out, err = cli("run", "E1", "--config", tiny_config, "--output", tmp_path / "out", "--executor", "ray", "--address", "ray://127.0.0.1:1")
    assert code == 2 and "Traceback" not in out + err and "--address: nothing answers at 'ray://127.0.0.1:1' (Connection refused)" in err
    assert not (tmp_path / "out").exists()


def test_a_new_local_cluster_keeps_its_token_notice_out_of_our_output(monkeypatch, caplog):
    """Starting a cluster, Ray announces that token authentication is on, between the banner and
    the progress bar: that notice goes; its warning that authentication is off stays."""
    from ray._private.authentication import authentication_token_setup as token_setup

    from vptbench.errors import UsageError
    from vptbench.harness.executors import RayExecutor

    def init_like_ray(**kwargs):
        token_setup._warn_token_auth_enabled()
        token_setup._warn_token_auth_disabled()
        raise ConnectionError("stop here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init_like_ray)
    with pytest.raises(UsageError, match="stop here"):
        next(RayExecutor(None, "cpu").run(None, [], None, False))
    assert [record.getMessage()[:32] for record in caplog.records] == ["Token authentication is disabled"]


def test_starting_ray_does_not_take_over_sigterm(monkeypatch):
    """ray.init installs its own SIGTERM handler, which kills the suite with no record of the run in
    flight; the executor gives the command's handler back."""
    import signal

    from vptbench.errors import UsageError
    from vptbench.harness.executors import RayExecutor

    def ours(signum, frame):
        raise KeyboardInterrupt

    def init_like_ray(**kwargs):
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        raise ConnectionError("stop here")

    previous = signal.signal(signal.SIGTERM, ours)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init_like_ray)
    try:
        with pytest.raises(UsageError, match="stop here"):
            next(RayExecutor(None, "cpu").run(None, [], None, False))
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_search_on_ray_asks_and_scores_the_same_trials(local_ray, cli, tiny_model_dir, image_folder, tmp_path):
    """Trials asked in blocks run side by side on the cluster, and the search is the one the local
    executor runs: the same values, pruning decisions and validation accuracies, the same choice."""
    from conftest import tiny_suite_toml

    experiments = """
[suites.s.search]
trials = 4
parallel = 2
space = { lr = { low = 1e-3, high = 0.3, log = true } }
[suites.s.experiments.E2]
tuner = "linear-probe"
[suites.s.experiments.E3]
tuner = "vpt-shallow"
params = { num_tokens = 2 }
"""
    config = tmp_path / "benchmark.toml"
    config.write_text(tiny_suite_toml(tiny_model_dir, image_folder, experiments, "epochs = 4, batch_size = 8"))
    args = ("run", "--all", "--config", config, "--quiet", "--device", "cpu")
    trials = []
    for executor in ("inline", "ray"):
        code, _, err = cli(*args, "--output", tmp_path / executor, "--executor", executor)
        assert code == 0, err
        (run_dir,) = (tmp_path / executor).iterdir()
        trials.append(pd.read_csv(run_dir / "trials.csv")[["experiment", "trial", "status", "val_accuracy", "epochs_run", "lr"]])
    pd.testing.assert_frame_equal(trials[1], trials[0])
    assert len(trials[0]) == 8
