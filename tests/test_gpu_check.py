"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end at toy sizes on CPU, so a session
that is lent a GPU for a few minutes does not spend them on a broken script."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses, the demo suite compiled: minutes

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _check(out: Path, *args: str) -> str:
    # no --budget: a smoke check then has no deadline, so a slow or busy machine cannot stop a step
    # and change the verdict; the timeout only ends a hung check
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--smoke", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=3600)
    assert result.returncode == 0, result.stderr[-2000:]
    return (out / "gpu_check.md").read_text()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every step once, the suite compiled as on the GPU: (OUT, the suite's folder)."""
    root = tmp_path_factory.mktemp("gpu-check")
    _check(root / "out", "--suite-dir", str(root / "suite"))
    return root / "out", root / "suite"


def test_gpu_check_smoke_writes_every_file_and_the_targets(smoke):
    out, _ = smoke
    assert sorted(p.name for p in out.iterdir()) == ["bench-batch32.json", "bench-compile.json", "bench.json", "gpu_check.log", "gpu_check.md", "suite-run.tar.gz"]
    assert [row["experiment"] for row in json.loads((out / "bench.json").read_text())["rows"]] == ["E1", "E2", "E3", "E4", "E5", "E6"]
    assert [row["batch_size"] for row in json.loads((out / "bench-batch32.json").read_text())["rows"]] == [32, 32, 32]
    report = (out / "gpu_check.md").read_text()
    assert "6 of 6 runs finished" in report and "## Throughput, torch.compile" in report and "--compile --device" in report
    targets = report[report.index("## Targets") :].splitlines()
    assert sum(line.endswith("| n/a (smoke) |") for line in targets) == 3
    with tarfile.open(out / "suite-run.tar.gz") as tar:
        runs = [name for name in tar.getnames() if name.endswith(".json") and "/runs/" in name]
        assert len(runs) == 6
        run_json = next(tar.extractfile(m) for m in tar.getmembers() if m.name.endswith("/run.json"))
        assert {e["training"]["compile"] for e in json.load(run_json)["config"]["experiments"].values()} == {True}


def test_gpu_check_resumes_a_stopped_suite_and_adds_up_its_wall_times(smoke, tmp_path):
    suite = tmp_path / "suite"
    shutil.copytree(smoke[1], suite)
    (run_dir,) = [p for p in suite.iterdir() if p.is_dir()]
    (run_dir / "runs" / "E2-seed0.json").unlink()  # as if the deadline had stopped the suite there
    e3 = run_dir / "runs" / "E3-seed0.json"
    e3.write_text(json.dumps({**json.loads(e3.read_text()), "status": "diverged"}))  # finished: kept
    (suite / "zz-crashed-before-run-json").mkdir()  # a run directory without run.json is passed over
    second = _check(tmp_path / "second", "--steps", "suite", "--suite-dir", str(suite))
    assert f"`vptbench run --resume {run_dir} " in second and "over 2 commands" in second and "6 of 6 runs finished" in second
    walls = json.loads((suite / "walls.json").read_text())
    assert len(walls) == 2 and f"whole suite: {sum(walls):.0f} s over 2" in second
    assert f"{sum(walls):.0f} s (at most, over 2 commands) |" in second
    third = _check(tmp_path / "third", "--steps", "suite", "--suite-dir", str(suite))
    assert "(exit not run: already finished)" in third and len(json.loads((suite / "walls.json").read_text())) == 2


@pytest.mark.parametrize(("suite_name", "model"), [("paper", "vit-b16-random"), ("demo", "demo-clip")])
def test_gpu_check_refuses_to_resume_another_suite_or_model(smoke, tmp_path, suite_name, model):
    suite = tmp_path / "suite"
    shutil.copytree(smoke[1], suite)
    (run_json,) = suite.glob("*/run.json")
    meta = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({**meta, "suite": suite_name, "config": {**meta["config"], "model_name": model}}))
    report = _check(tmp_path / "out", "--steps", "suite", "--suite-dir", str(suite))
    assert f"not run. {run_json.parent} holds suite {suite_name}, {model} on digits, not paper, demo-clip on digits" in report
    assert len(json.loads((suite / "walls.json").read_text())) == 1


def test_ctrl_c_on_the_check_keeps_what_ran_and_its_wall_time(smoke, tmp_path):
    suite = tmp_path / "suite"
    shutil.copytree(smoke[1], suite)
    (run_dir,) = [p for p in suite.iterdir() if p.is_dir()]
    for key in ("E5-seed0", "E6-seed0"):
        (run_dir / "runs" / f"{key}.json").unlink()
    out = tmp_path / "out"
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--smoke", "--steps", "suite", "--suite-dir", str(suite)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, HF_HUB_OFFLINE="1"), start_new_session=True)
    deadline = time.monotonic() + 600  # only ends a hung check: a busy machine may take long to start it
    while "$ vptbench run --resume" not in ((out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    time.sleep(3)  # into the resumed suite, before E5 and E6 (compiled) can finish
    os.killpg(process.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole process group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    report = (out / "gpu_check.md").read_text()
    assert "Stopped by Ctrl-C" in report and "over 2 commands" in report
    assert len(json.loads((suite / "walls.json").read_text())) == 2


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--steps", "suite,warp"], "--steps: unknown warp"),
        (["--steps", " , "], "--steps: none given"),
        (["--budget", "-5"], "--budget: -5 is not a positive number of seconds"),
        (["--out", str(SCRIPT)], f"--out: {SCRIPT} is a file, not a folder"),
    ],
)
def test_gpu_check_names_a_bad_argument(tmp_path, args, error):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), *args], capture_output=True, text=True)
    assert result.returncode == 2 and error in result.stderr
