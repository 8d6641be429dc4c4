"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end at toy sizes on CPU, so a session
that is lent a GPU for a few minutes does not spend them on a broken script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_smoke_writes_every_file_and_the_targets(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--smoke", "--budget", "300", "--suite-dir", str(tmp_path / "suite")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["bench-batch32.json", "bench-compile.json", "bench.json", "gpu_check.log", "gpu_check.md", "suite-run.tar.gz"]
    assert [row["experiment"] for row in json.loads((out / "bench.json").read_text())["rows"]] == ["E1", "E2", "E3", "E4", "E5", "E6"]
    assert [row["batch_size"] for row in json.loads((out / "bench-batch32.json").read_text())["rows"]] == [32, 32, 32]
    report = (out / "gpu_check.md").read_text()
    assert "6 of 6 runs finished ok" in report and "## Throughput, torch.compile" in report
    targets = report[report.index("## Targets") :].splitlines()
    assert sum(line.endswith("| n/a (smoke) |") for line in targets) == 3
    with tarfile.open(out / "suite-run.tar.gz") as tar:
        assert sum(name.endswith(".json") and "/runs/" in name for name in tar.getnames()) == 6


def test_gpu_check_resumes_a_stopped_suite_and_adds_up_its_wall_times(tmp_path):
    suite = tmp_path / "suite"
    command = [sys.executable, str(SCRIPT), "--smoke", "--steps", "suite", "--budget", "300", "--suite-dir", str(suite)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    def check(out: str) -> str:
        result = subprocess.run([*command, "--out", str(tmp_path / out)], capture_output=True, text=True, env=env, timeout=400)
        assert result.returncode == 0, result.stderr[-2000:]
        return (tmp_path / out / "gpu_check.md").read_text()

    first = check("first")
    assert "6 of 6 runs finished ok" in first and "## Throughput" not in first
    (run_dir,) = [p for p in suite.iterdir() if p.is_dir()]
    (run_dir / "runs" / "E4-seed0.json").unlink()  # as if the deadline had stopped the suite there
    second = check("second")
    assert "`vptbench run --resume" in second and "over 2 commands" in second and "6 of 6 runs finished ok" in second
    walls = json.loads((suite / "walls.json").read_text())
    assert len(walls) == 2 and f"whole suite: {sum(walls):.0f} s" in second
    assert "(exit not run: already finished)" in check("third") and len(json.loads((suite / "walls.json").read_text())) == 2


def test_gpu_check_names_an_unknown_step(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--steps", "suite,warp"], capture_output=True, text=True)
    assert result.returncode == 2 and "--steps: unknown warp" in result.stderr
