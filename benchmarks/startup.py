"""Start-up: how long the commands that load no data take, against the floor of importing torch.

`python benchmarks/startup.py [--repeat 5]` times, in fresh processes on the demo registry:
`python -c "import torch"`, `vptbench --help`, `vptbench list`, `vptbench run --all --dry-run` and
`vptbench run E9` (an unknown id: refused before any heavy import), and lists the heavy libraries
each one imported (`-X importtime`). Built-in strategies only (third-party plugins are off), so the
figures are vptbench's own. Medians; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "datasets", "matplotlib", "pandas", "sklearn")
COMMANDS = {
    "import torch (floor)": [sys.executable, "-c", "import torch"],
    "vptbench --help": [sys.executable, "-m", "vptbench.cli", "--help"],
    "vptbench list": [sys.executable, "-m", "vptbench.cli", "list"],
    "vptbench run --all --dry-run": [sys.executable, "-m", "vptbench.cli", "run", "--all", "--dry-run"],
    "vptbench run E9 (refused)": [sys.executable, "-m", "vptbench.cli", "run", "E9"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ, VPTBENCH_DISABLE_PLUGIN_AUTOLOAD="1", HF_HUB_OFFLINE="1")
    print("| Command | Median s | Heavy imports |\n|---|---|---|")
    for name, command in COMMANDS.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(command, env=env, capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        traced = subprocess.run([command[0], "-X", "importtime", *command[1:]], env=env, capture_output=True, text=True, check=False)
        imported = [lib for lib in HEAVY if re.search(rf"\|\s+{lib}$", traced.stderr, re.M)]
        print(f"| `{name}` | {statistics.median(times):.2f} | {', '.join(imported) or 'none'} |")


if __name__ == "__main__":
    main()
