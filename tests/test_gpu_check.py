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
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--smoke", "--budget", "300"], capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["bench-compile.json", "bench.json", "gpu_check.log", "gpu_check.md", "suite-run.tar.gz"]
    assert [row["experiment"] for row in json.loads((out / "bench.json").read_text())["rows"]] == ["E1", "E2", "E3", "E4", "E5", "E6"]
    report = (out / "gpu_check.md").read_text()
    assert "6 of 6 runs finished ok" in report and "## Throughput, torch.compile" in report
    targets = report[report.index("## Targets") :].splitlines()
    assert sum(line.endswith("| n/a (smoke) |") for line in targets) == 3
    with tarfile.open(out / "suite-run.tar.gz") as tar:
        assert sum(name.endswith(".json") and "/runs/" in name for name in tar.getnames()) == 6
