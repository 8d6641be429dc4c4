"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end at toy sizes on CPU, so a session
that is lent a GPU for a few minutes does not spend them on a broken script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _check(out: Path, *args: str) -> str:
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--smoke", "--budget", "400", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=500)
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


def test_gpu_check_refuses_to_resume_another_models_suite(smoke, tmp_path):
    suite = tmp_path / "suite"
    shutil.copytree(smoke[1], suite)
    (run_json,) = suite.glob("*/run.json")
    meta = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({**meta, "config": {**meta["config"], "model_name": "vit-b16-random"}}))
    report = _check(tmp_path / "out", "--steps", "suite", "--suite-dir", str(suite))
    assert "not run." in report and "holds vit-b16-random on digits, not demo-clip on digits" in report
    assert len(json.loads((suite / "walls.json").read_text())) == 1


@pytest.mark.parametrize(("steps", "error"), [("suite,warp", "--steps: unknown warp"), (" , ", "--steps: none given")])
def test_gpu_check_names_a_bad_step(tmp_path, steps, error):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--steps", steps], capture_output=True, text=True)
    assert result.returncode == 2 and error in result.stderr
