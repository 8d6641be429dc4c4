"""The GPU figures of the performance issue in one run that fits a short device lease.

    python3 benchmarks/gpu_check.py --out "$OUT"                  # on the GPU machine
    python benchmarks/gpu_check.py --out /tmp/check --smoke        # the same steps at toy sizes, any machine

Steps, most important first, each given what is left of `--budget` seconds:
1. `vptbench bench`: the paper suite's six strategies at CLIP ViT-B/16 geometry, bf16, batch 256;
2. the whole `paper` suite (500 epochs) on random-init ViT-B/16 and synthetic data of the brain-MRI
   split's sizes; at the deadline it gets Ctrl-C, which keeps the finished runs;
3. the frozen forward (E1) and full fine-tuning (E6) again under torch.compile.

OUT receives gpu_check.md (the tables and each target met or not, ready for benchmarks/RESULTS.md),
the raw JSON, the suite's run directory as a tarball and the log: five files, within what the device
tool brings back. Every step runs the `vptbench` command a user would.
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

TARGETS = {"E1": 8000.0, "E6": 2500.0}  # images/s on an H100 or H200 in bf16
SUITE_TARGET_SECONDS = 15 * 60


def vptbench(args: list[str], log, seconds: float) -> tuple[int, str, float]:
    """(exit code, stdout, wall seconds) of one command; Ctrl-C at the deadline, as a user would."""
    log.write(f"\n$ vptbench {' '.join(args)}\n")
    log.flush()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "vptbench.cli", *args], stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        out, _ = process.communicate(timeout=max(seconds, 1))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    log.write(out)
    return process.returncode, out, time.perf_counter() - start


def throughput_table(rows: list[dict]) -> list[str]:
    lines = [
        "| Experiment | Tuner | Mode | Trainable | Step | Images/s | GFLOPs/img | TFLOP/s | MFU | Peak mem |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "–"
        lines.append(
            f"| {r['experiment']} | {r['tuner']} | {r['mode']} | {r['trainable_params']:,} | {r['step_ms']:.1f} ms | "
            f"{r['images_per_second']:,.0f} | {r['gflops_per_image']:.3g} | {r['achieved_tflops']:.3g} | {mfu} | {r['peak_memory_mb']:,.0f} MiB |"
        )
    return lines


def suite_records(output: Path) -> tuple[Path | None, list[dict]]:
    run_dirs = sorted(p for p in output.iterdir() if p.is_dir()) if output.exists() else []
    if not run_dirs:
        return None, []
    return run_dirs[-1], [json.loads(p.read_text()) for p in sorted((run_dirs[-1] / "runs").glob("*.json"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results (the device tool's $OUT)")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all steps together")
    parser.add_argument(
        "--smoke", action="store_true", help="toy sizes on any device: checks this script, measures nothing"
    )
    args = parser.parse_args()
    deadline = time.perf_counter() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        device, bench_args = (
            "auto",
            ["--suite", "demo", "--model", "demo-clip", "--batch-size", "32", "--steps", "2", "--warmup", "1"],
        )
        suite_args, compiled = ["--model", "demo-clip", "--epochs", "2"], ["E2"]
    else:
        device, bench_args = "cuda", ["--batch-size", "256", "--steps", "20", "--warmup", "5"]
        suite_args, compiled = ["--model", "vit-b16-random"], ["E1", "E6"]
    bench_args += ["--device", device, "--precision", "bf16" if device == "cuda" else "fp32", "--json"]

    def save(lines: list[str]) -> str:  # after every step: a lease that ends early still returns what was measured
        text = "\n".join(lines) + "\n"
        (args.out / "gpu_check.md").write_text(text)
        return text

    report = [
        f"# GPU check, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC{' (smoke: toy sizes, not a measurement)' if args.smoke else ''}",
        "",
    ]
    best: dict[str, float] = {}

    with open(args.out / "gpu_check.log", "w") as log:
        code, out, _ = vptbench(["bench", *bench_args], log, deadline - time.perf_counter())
        if code == 0:
            eager = json.loads(out)
            (args.out / "bench.json").write_text(out)
            report += [
                f"## Throughput, eager — {eager['device']}",
                "",
                "`vptbench bench " + " ".join(bench_args) + "`",
                "",
                *throughput_table(eager["rows"]),
                "",
            ]
            best.update({r["experiment"]: r["images_per_second"] for r in eager["rows"]})
        else:
            report += [f"## Throughput, eager: failed (exit {code}, see gpu_check.log)", ""]
        save(report)

        output = Path(tempfile.mkdtemp(prefix="vptbench-gpu-check-"))  # outside OUT: the tool brings back few files
        command = [
            "run",
            "--all",
            "--suite",
            "paper",
            *suite_args,
            "--dataset",
            "brain-mri-synthetic",
            "--device",
            device,
            "--output",
            str(output),
            "--quiet",
        ]
        reserve = 150 if not args.smoke else 40  # keep time for the compiled step
        code, _, wall = vptbench(command, log, deadline - time.perf_counter() - reserve)
        run_dir, records = suite_records(output)
        report += [f"## The paper suite, end to end (exit {code})", "", "`vptbench " + " ".join(command) + "`", ""]
        report += [
            "| Experiment | Tuner | Status | Epochs | Test acc | Setup s | Train s | Eval s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in records:
            timings = " | ".join(f"{r.get(k) or 0:.1f}" for k in ("setup_seconds", "train_seconds", "eval_seconds"))
            report.append(
                f"| {r['experiment']} | {r['tuner']} | {r['status']} | {r.get('epochs_run', 0)} | {r.get('test_accuracy') or 0:.3f} | {timings} |"
            )
        finished = all(r["status"] == "ok" for r in records) and len(records) == 6
        report += [
            "",
            f"Wall time of the whole command: {wall:.0f} s ({'all six runs finished' if finished else 'NOT all six runs finished'}).",
            "",
        ]
        if run_dir is not None:
            with tarfile.open(args.out / "suite-run.tar.gz", "w:gz") as tar:
                tar.add(run_dir, arcname=run_dir.name)
        save(report)

        code, out, _ = vptbench(["bench", *compiled, *bench_args, "--compile"], log, deadline - time.perf_counter())
        if code == 0:
            fast = json.loads(out)
            (args.out / "bench-compile.json").write_text(out)
            report += ["## Throughput, torch.compile", "", *throughput_table(fast["rows"]), ""]
            for r in fast["rows"]:
                best[r["experiment"]] = max(best.get(r["experiment"], 0.0), r["images_per_second"])
        else:
            report += [f"## Throughput, torch.compile: not measured (exit {code}, see gpu_check.log)", ""]

    def verdict(met: bool) -> str:
        return "n/a (smoke)" if args.smoke else "yes" if met else "no"

    report += ["## Targets (H100 or H200, bf16)", "", "| Target | Measured | Met |", "|---|---|---|"]
    for experiment, target in TARGETS.items():
        measured = best.get(experiment)
        shown = f"{measured:,.0f} images/s" if measured is not None else "not measured"
        report.append(
            f"| {experiment} at least {target:,.0f} images/s | {shown} | {verdict(measured is not None and measured >= target)} |"
        )
    report.append(
        f"| paper suite under {SUITE_TARGET_SECONDS // 60} min | {wall:.0f} s | {verdict(finished and wall < SUITE_TARGET_SECONDS)} |"
    )
    print(save(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
