"""What pruning saves on `demo-tuned`, and what a tuned suite costs against the untuned one.

The packaged `demo-tuned` suite runs twice with the same sampler seed, once with its median pruner and
once with `pruner = "none"`: the trial epochs each spent and the best validation accuracy each found,
per strategy (goal: at least 40 % of trial epochs saved, the best within 1 point). Then the untuned
`demo` suite, for the wall time of the whole tuned suite against it. Each suite runs through the CLI
in a fresh process, as a user runs it; take the figures on a quiet machine.

    python benchmarks/search_pruning.py            # about 20 minutes on 2 CPU cores
    python benchmarks/search_pruning.py --keep D   # and keep the three run directories under D
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vptbench.registry.load import PACKAGED_CONFIG


def run_suite(config: Path, suite: str, output: Path) -> tuple[float, Path]:
    start = time.perf_counter()
    command = [sys.executable, "-m", "vptbench.cli", "run", "--all", "--suite", suite, "--config", str(config), "-o", str(output), "-q"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    (run_dir,) = output.iterdir()
    return time.perf_counter() - start, run_dir


def with_pruner(text: str, pruner: str) -> str:
    """The registry with demo-tuned's pruner replaced (and nothing else changed)."""
    head, marker, rest = text.partition("[suites.demo-tuned.search]")
    assert marker and 'pruner = "median"' in rest, "demo-tuned's search table has changed: update this benchmark"
    return head + marker + rest.replace('pruner = "median"', f'pruner = "{pruner}"', 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="keep the run directories in this folder (default: a temporary one, removed)")
    args = parser.parse_args()
    text = PACKAGED_CONFIG.read_text()
    results = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        for pruner in ("median", "none"):
            config = folder / f"{pruner}.toml"
            config.write_text(with_pruner(text, pruner))
            seconds, run_dir = run_suite(config, "demo-tuned", folder / pruner)
            summary = json.loads((run_dir / "search" / "summary.json").read_text())
            results[pruner] = (seconds, {s["experiment"]: s for s in summary["experiments"] if not s["note"]})
        untuned, _ = run_suite(PACKAGED_CONFIG, "demo", folder / "untuned")
    (pruned_seconds, pruned), (_, full) = results["median"], results["none"]
    print(f"{'strategy':<10}{'epochs pruned':>15}{'epochs none':>13}{'saved':>8}{'best val pruned':>17}{'best val none':>15}")
    for experiment, entry in pruned.items():
        other = full[experiment]
        saved = 1 - entry["trial_epochs"] / other["trial_epochs"]
        print(
            f"{experiment:<10}{entry['trial_epochs']:>15}{other['trial_epochs']:>13}{saved:>8.0%}"
            f"{entry['best_val_accuracy']:>17.3f}{other['best_val_accuracy']:>15.3f}"
        )
    spent, unpruned = sum(e["trial_epochs"] for e in pruned.values()), sum(e["trial_epochs"] for e in full.values())
    gap = max(abs(pruned[e]["best_val_accuracy"] - full[e]["best_val_accuracy"]) for e in pruned)
    print(f"trial epochs: {spent} pruned against {unpruned} ({1 - spent / unpruned:.0%} saved); largest best-val gap {100 * gap:.1f} points")
    print(f"wall time: demo-tuned {pruned_seconds:.0f} s (pruned), {results['none'][0]:.0f} s (no pruning); untuned demo {untuned:.0f} s")


if __name__ == "__main__":
    main()
