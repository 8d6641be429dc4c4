"""One (experiment, seed) run that never raises: every failure becomes a record with its status."""

from __future__ import annotations

import traceback
from dataclasses import replace

import torch

from vptbench.errors import VptbenchError, first_line
from vptbench.harness.device import OutOfMemory, free_failed_attempt
from vptbench.harness.observer import Observer
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.runner import run_one
from vptbench.harness.workbench import Workbench
from vptbench.registry import Training
from vptbench.results.records import RunRecord, Status


def run_guarded(bench: Workbench, plan: PlannedExperiment, seed: int, observer: Observer, retry_oom: bool = False) -> RunRecord:
    """The run's record; an exception gives a `failed` record with one line (the traceback rides
    along for the suite's errors.log), CUDA out-of-memory gives `oom`."""
    if plan.tuner is None:
        return failed_record(plan, seed, plan.error, trace=plan.traceback)
    out_of_memory = ""
    try:
        return run_one(bench, plan, seed, observer)
    except (OutOfMemory, torch.cuda.OutOfMemoryError) as exc:
        # handled below: inside this block the traceback keeps the failed run's tensors alive
        out_of_memory = exc.during if isinstance(exc, OutOfMemory) else "setting up"
    except VptbenchError as exc:
        return failed_record(plan, seed, str(exc))
    except Exception as exc:  # noqa: BLE001 - a tuner's bug must not end the suite
        return failed_record(plan, seed, f"{type(exc).__name__}: {first_line(exc)} (traceback in errors.log)", trace=traceback.format_exc())
    free_failed_attempt()
    training = plan.training
    if out_of_memory == "training" and retry_oom and training.accumulation_steps * 2 <= training.batch_size:
        smaller = training.with_changes(accumulation_steps=training.accumulation_steps * 2)
        return run_guarded(bench, replace(plan, training=smaller), seed, observer, retry_oom)
    return failed_record(plan, seed, _out_of_memory_advice(out_of_memory, training), Status.oom)


def _out_of_memory_advice(during: str, training: Training) -> str:
    if during == "training":
        micro = -(-training.batch_size // training.accumulation_steps)
        return (
            f"CUDA out of memory while training at batch size {training.batch_size} (micro-batches of {micro}); lower "
            "batch_size, or pass --retry-oom to accumulate gradients over smaller micro-batches at the same effective batch"
        )
    if during in ("evaluating", "encoding features"):
        return f"CUDA out of memory while {during} in batches of {training.eval_batch_size}; lower eval_batch_size"
    return f"CUDA out of memory while {during}: the model does not fit on this device"


def failed_record(plan: PlannedExperiment, seed: int, error: str, status: Status = Status.failed, trace: str = "") -> RunRecord:
    """The record of a run that did not finish: its identity, settings, status and one line of why."""
    return RunRecord(
        experiment=plan.id,
        tuner=plan.spec.tuner,
        seed=seed,
        trial=plan.trial.number if plan.trial else None,
        trial_values=plan.trial.values if plan.trial else {},
        status=status,
        error=first_line(Exception(error)) if error.strip() else "unknown error",
        params=plan.params(),
        reference=plan.reference(),
        traceback=trace,
    )
