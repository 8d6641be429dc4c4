"""One (experiment, seed) run that never raises: every failure becomes a record with its status."""

from __future__ import annotations

import traceback
from dataclasses import replace

import torch

from vptbench.errors import VptbenchError, first_line
from vptbench.harness.device import OutOfMemory, free_failed_attempt
from vptbench.harness.runner import Observer, PlannedExperiment, Workbench, run_one
from vptbench.registry import Training


def params_of(plan: PlannedExperiment) -> dict:
    return plan.config.model_dump(mode="json") if plan.config is not None else dict(plan.spec.params)


def reference_of(plan: PlannedExperiment) -> dict | None:
    return plan.spec.reference.model_dump() if plan.spec.reference else None


def run_guarded(bench: Workbench, plan: PlannedExperiment, seed: int, observer: Observer, retry_oom: bool = False) -> dict:
    """The run's record; an exception gives a `failed` row with one line (the traceback rides along
    under "traceback" for the suite's errors.log), CUDA out-of-memory gives `oom`."""
    if plan.tuner is None:
        record = failed_record(plan, seed, plan.error)
        return {**record, "traceback": plan.traceback} if plan.traceback else record
    out_of_memory = ""
    try:
        record = run_one(bench, plan, seed, observer)
    except (OutOfMemory, torch.cuda.OutOfMemoryError) as exc:
        # handled below: inside this block the traceback keeps the failed run's tensors alive
        out_of_memory = exc.during if isinstance(exc, OutOfMemory) else "setting up"
    except VptbenchError as exc:
        return failed_record(plan, seed, str(exc))
    except Exception as exc:  # noqa: BLE001 - a tuner's bug must not end the suite
        record = failed_record(plan, seed, f"{type(exc).__name__}: {first_line(exc)} (traceback in errors.log)")
        return {**record, "traceback": traceback.format_exc()}
    if out_of_memory:
        free_failed_attempt()
        training = plan.training
        if out_of_memory == "training" and retry_oom and training.accumulation_steps * 2 <= training.batch_size:
            smaller = training.model_copy(update={"accumulation_steps": training.accumulation_steps * 2})
            return run_guarded(bench, replace(plan, training=smaller), seed, observer, retry_oom)
        return {**failed_record(plan, seed, _out_of_memory_advice(out_of_memory, training)), "status": "oom"}
    return {**record, "params": params_of(plan), "reference": reference_of(plan)}


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


def failed_record(plan: PlannedExperiment, seed: int, error: str) -> dict:
    return {
        "experiment": plan.id,
        "tuner": plan.spec.tuner,
        "seed": seed,
        "status": "failed",
        "error": first_line(Exception(error)) if error.strip() else "unknown error",
        "params": params_of(plan),
        "reference": reference_of(plan),
    }
