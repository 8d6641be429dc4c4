"""The GPU figures of the performance issue in one run that fits a short device lease.

    python3 benchmarks/gpu_check.py --out "$OUT"                  # on the GPU machine
    python benchmarks/gpu_check.py --out /tmp/check --smoke        # the same steps at toy sizes, any machine

Steps, each given what is left of `--budget` seconds (the script ends within it: a step still
running 30 s before the deadline gets Ctrl-C, as a user would, and is killed at it). With `--smoke`
there is no budget unless one is given: a toy run checks the script, and its outcome must not depend
on how fast or busy the machine is:
1. eager: `vptbench bench`, the paper suite's six strategies at CLIP ViT-B/16 geometry, bf16, batch 256;
2. compiled: the frozen forward (E1) and full fine-tuning (E6) again under torch.compile;
3. batch32: E3, E5 and E6 at the paper's batch of 32, eager;
4. suite: the whole `paper` suite (500 epochs, compiled) on random-init ViT-B/16 and synthetic data of the
   brain-MRI split's sizes. At the deadline it gets Ctrl-C, which keeps the finished runs; a second
   call with `--steps suite` on the same warm machine resumes it, and the wall times add up.

OUT receives gpu_check.md (the tables and each target met or not, ready for benchmarks/RESULTS.md),
each bench step's JSON, the suite's run directory as a tarball and the log: six files, within what
the device tool brings back. Every step runs the `vptbench` command a user would.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

# what a resume keeps; not from the harness, whose torch import would delay a bad argument's error
from vptbench.results.records import Status

TARGETS = {"E1": 8000.0, "E6": 2500.0}  # images/s on an H100 or H200 in bf16
SUITE_TARGET_SECONDS = 15 * 60
STEPS = ("eager", "compiled", "batch32", "suite")
GRACE = 30.0  # seconds a stopped command gets to write what it finished


class Check:
    """The steps' results so far, written to OUT/gpu_check.md after each step."""

    def __init__(self, out: Path, budget: float | None, smoke: bool) -> None:
        self.out, self.smoke = out, smoke
        self.deadline = None if budget is None else time.perf_counter() + budget  # None: no budget
        self.sections: list[str] = []
        self.best: dict[str, float] = {}  # experiment -> images/s, eager or compiled
        self.suite: dict | None = None
        self.interrupted = False  # Ctrl-C on the check: what ran is reported, nothing more starts
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "gpu_check.log", "w")  # noqa: SIM115 - open for the whole check

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def vptbench(self, args: list[str]) -> tuple[int | None, str, float, bool]:
        """(exit code, stdout, wall seconds, stopped) of one `vptbench` command; after a Ctrl-C on
        the check no further command starts, and the exit code of one that did not start is None."""
        left = self.left()
        allowed = None if left is None else left - GRACE  # None: no time limit
        if (allowed is not None and allowed <= 0) or self.interrupted:
            return None, "", 0.0, True
        self.log.write(f"\n$ vptbench {' '.join(args)}\n")
        self.log.flush()
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "vptbench.cli", *args], stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        stopped = True
        try:
            out, _ = process.communicate(timeout=allowed)
            stopped = False
        except subprocess.TimeoutExpired:
            out = stop(process)
        except KeyboardInterrupt:  # the terminal's Ctrl-C reaches the command too; a kill -INT of this script does not
            self.interrupted = True
            try:
                out, _ = process.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                out = stop(process)
        self.log.write(out)
        self.log.flush()
        return process.returncode, out, time.perf_counter() - start, stopped

    def bench(self, title: str, args: list[str], json_name: str) -> None:
        code, out, _, stopped = self.vptbench(["bench", *args])
        try:  # exit 1 still prints rows: the strategies that could be timed
            result = json.loads(out) if code in (0, 1) else None
        except json.JSONDecodeError:
            result = None
        if result is None:
            why = "stopped at the deadline" if stopped else f"exit {code}"
            self.add([f"## {title}: not measured ({why}; see gpu_check.log)"])
            return
        (self.out / json_name).write_text(out)
        for row in result["rows"]:
            if "error" not in row:
                self.best[row["experiment"]] = max(self.best.get(row["experiment"], 0.0), row["images_per_second"])
        self.add(
            [
                f"## {title} — {result['device']}",
                "",
                f"`vptbench bench {' '.join(args)}`",
                "",
                *throughput_table(result["rows"]),
            ]
        )

    def paper_suite(self, model: str, dataset: str, extra: list[str], device: str, folder: Path) -> None:
        """The whole suite, or the rest of it: this check's run directory already in `folder` (a
        machine kept warm between two device calls keeps /tmp) is resumed, and the commands' wall
        times add up. A run directory of another suite, model or dataset there is refused, not resumed."""
        folder.mkdir(parents=True, exist_ok=True)
        walls_file, run_dir = folder / "walls.json", latest_run_dir(folder)
        walls = json.loads(walls_file.read_text()) if run_dir and walls_file.exists() else []
        if run_dir:
            meta = json.loads((run_dir / "run.json").read_text())
            found = (meta["suite"], meta["config"]["model_name"], meta["config"]["dataset_name"])
            if found != ("paper", model, dataset):
                self.add([f"## The paper suite: not run. {run_dir} holds suite {found[0]}, {found[1]} on {found[2]}, not paper, {model} on {dataset}; pass another --suite-dir"])
                return
            command = ["run", "--resume", str(run_dir), "--device", device, "--quiet"]
        else:
            command = ["run", "--all", "--suite", "paper", "--model", model, "--dataset", dataset, *extra, "--device", device, "--output", str(folder), "--quiet"]
        state = suite_state(run_dir) if run_dir else None
        if state and finished_runs(state[1]) == len(state[0]):
            code = "not run: already finished"
        else:
            code, _, wall, _ = self.vptbench(command)
            if code is not None:  # the command started
                walls.append(wall)
                walls_file.write_text(json.dumps(walls))
        lines = [f"## The paper suite, end to end (exit {code})", "", f"`vptbench {' '.join(command)}`", ""]
        run_dir = latest_run_dir(folder)
        if not run_dir:
            self.add([*lines, "No run directory was written; see gpu_check.log."])
            return
        planned, records = suite_state(run_dir)
        lines += [
            "| Experiment | Tuner | Status | Epochs | Test acc | Setup s | Train s | Eval s | Images/s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in records:
            timings = " | ".join(f"{r.get(k) or 0:.1f}" for k in ("setup_seconds", "train_seconds", "eval_seconds"))
            lines.append(
                f"| {r['experiment']} | {r['tuner']} | {r['status']} | {r.get('epochs_run', 0)} | "
                f"{r.get('test_accuracy') or 0:.3f} | {timings} | {r.get('images_per_second') or 0:,.0f} |"
            )
        done = finished_runs(records)
        self.suite = {"wall": sum(walls), "commands": len(walls), "done": done, "planned": len(planned)}
        across = "" if len(walls) < 2 else (
            f" over {len(walls)} commands, each resuming the one before: an upper bound, as each loads"
            " the data and compiles again and reruns the run that was stopped"
        )  # fmt: skip
        lines += ["", f"Wall time of the whole suite: {sum(walls):.0f} s{across}; {done} of {len(planned)} runs finished."]
        with tarfile.open(self.out / "suite-run.tar.gz", "w:gz") as tar:
            tar.add(run_dir, arcname=run_dir.name)
        self.add(lines)

    def add(self, lines: list[str]) -> None:
        self.sections.append("\n".join(lines) + "\n")
        self.save()

    def save(self) -> str:
        """The report so far, targets included: a lease that ends early still returns what was measured."""
        title = f"# GPU check, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{' (smoke: toy sizes, not a measurement)' if self.smoke else ''}"
        stopped = ["Stopped by Ctrl-C: the steps after the one running then did not run.", ""] if self.interrupted else []
        text = "\n".join([title, "", *stopped, *self.sections, *self.targets()]) + "\n"
        (self.out / "gpu_check.md").write_text(text)
        return text

    def targets(self) -> list[str]:
        def verdict(met: bool | None) -> str:
            return "n/a (smoke)" if self.smoke else "unknown" if met is None else "yes" if met else "no"

        lines = ["## Targets (H100 or H200, bf16)", "", "| Target | Measured | Met |", "|---|---|---|"]
        for experiment, target in TARGETS.items():
            measured = self.best.get(experiment)
            shown = f"{measured:,.0f} images/s" if measured is not None else "not measured"
            lines.append(
                f"| {experiment} at least {target:,.0f} images/s | {shown} | {verdict(None if measured is None else measured >= target)} |"
            )
        suite, met, shown = self.suite, None, "not measured"
        if suite and not suite["commands"]:
            shown = "no wall time recorded for this run directory"
        elif suite:
            within = suite["wall"] < SUITE_TARGET_SECONDS
            # one command's wall is exact; a sum over resumed commands is an upper bound
            over = False if suite["commands"] == 1 else None
            bound = "" if suite["commands"] == 1 else f" (at most, over {suite['commands']} commands)"
            if suite["done"] == suite["planned"]:
                shown, met = f"{suite['wall']:.0f} s{bound}", True if within else over
            else:
                shown = f"stopped at {suite['wall']:.0f} s{bound} with {suite['done']} of {suite['planned']} runs finished"
                met = None if within else over
        lines.append(f"| paper suite under {SUITE_TARGET_SECONDS // 60} min | {shown} | {verdict(met)} |")
        return lines


def stop(process: subprocess.Popen) -> str:
    """Ctrl-C for a running command, as a user would give it: GRACE seconds to write what it
    finished (vptbench keeps finished runs), then it is killed. Returns what it printed."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=GRACE)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0]


def latest_run_dir(folder: Path) -> Path | None:
    """The newest run directory in `folder` that got as far as writing its run.json."""
    run_dirs = sorted(p.parent for p in folder.glob("*/run.json"))
    return run_dirs[-1] if run_dirs else None


def suite_state(run_dir: Path) -> tuple[list[str], list[dict]]:
    """The runs (experiment x seed) a run directory plans, and the records of those that ran."""
    planned = json.loads((run_dir / "run.json").read_text())["plan"]
    return planned, [json.loads(p.read_text()) for p in sorted((run_dir / "runs").glob("*.json"))]


def finished_runs(records: list[dict]) -> int:
    return sum(Status(r["status"]).finished for r in records)


def throughput_table(rows: list[dict]) -> list[str]:
    lines = [
        "| Experiment | Tuner | Mode | Trainable | Step | Images/s | GFLOPs/img | TFLOP/s | MFU | Peak mem |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['experiment']} | {r['tuner']} | failed: {r['error']} | | | | | | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–"
        lines.append(
            f"| {r['experiment']} | {r['tuner']} | {r['mode']} | {r['trainable_params']:,} | {r['step_ms']:.1f} ms | "
            f"{r['images_per_second']:,.0f} | {r['gflops_per_image']:.3g} | {r['achieved_tflops']:.3g} | {mfu} | {r['peak_memory_mb']:,.0f} MiB |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results (the device tool's $OUT)")
    parser.add_argument(
        "--budget", type=float,
        help="seconds for all steps together, a hard limit (default 540; with --smoke, none)",
    )  # fmt: skip
    parser.add_argument(
        "--smoke", action="store_true", help="toy sizes on any device: checks this script, measures nothing"
    )
    parser.add_argument(
        "--steps", default=",".join(STEPS),
        help=f"which steps, comma-separated, from {', '.join(STEPS)} (a call that resumes the suite: suite)",
    )  # fmt: skip
    parser.add_argument(
        "--suite-dir", type=Path,
        help="where the suite's run directory lives; one already there is resumed (default: vptbench-gpu-check-suite, or -smoke, in the temp folder)",
    )  # fmt: skip
    args = parser.parse_args()
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    if not steps or (unknown := sorted(set(steps) - set(STEPS))):
        parser.error(f"--steps: {'unknown ' + ', '.join(unknown) if steps else 'none given'}; choose from {', '.join(STEPS)}")
    if args.budget is None and not args.smoke:
        args.budget = 540.0
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget: {args.budget:g} is not a positive number of seconds")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {args.out} is a file, not a folder")
    check = Check(args.out, args.budget, args.smoke)
    if args.smoke:
        device, model = "auto", ["--suite", "demo", "--model", "demo-clip"]
        sizes = ["--steps", "2", "--warmup", "1"]
        # the demo model's own data: its 16-token text tower cannot take the brain-MRI prompts
        suite, compiled = ("demo-clip", "digits", ["--epochs", "2", "--compile"]), ["E2"]
    else:
        device, model, sizes = "cuda", [], ["--steps", "20", "--warmup", "5"]
        # compiled: at the paper's batch of 32 an eager step is bound by per-step overhead (RESULTS.md)
        suite, compiled = ("vit-b16-random", "brain-mri-synthetic", ["--compile"]), ["E1", "E6"]
    common = [*model, *sizes, "--device", device, "--precision", "bf16" if device == "cuda" else "fp32", "--json"]
    large, paper_batch = [*common, "--batch-size", "256" if device == "cuda" else "32"], [*common, "--batch-size", "32"]

    def run_steps() -> None:
        if "eager" in steps:
            check.bench("Throughput, eager", large, "bench.json")
        if "compiled" in steps:
            check.bench("Throughput, torch.compile", [*compiled, *large, "--compile"], "bench-compile.json")
        if "batch32" in steps:  # the step alone at the suite's batch: tells the step's overhead from the loop's
            check.bench("Throughput at the paper's batch of 32, eager", ["E3", "E5", "E6", *paper_batch], "bench-batch32.json")
        if "suite" in steps:
            folder = args.suite_dir or Path(tempfile.gettempdir()) / f"vptbench-gpu-check-{'smoke' if args.smoke else 'suite'}"
            check.paper_suite(*suite, device, folder)

    try:
        run_steps()
    except KeyboardInterrupt:  # between commands: what finished is still written below
        check.interrupted = True
    print(check.save())
    return 130 if check.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
