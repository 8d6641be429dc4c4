"""One (experiment, seed) run that never raises: every failure becomes a record with its status."""

from __future__ import annotations

import gc
import traceback
from dataclasses import replace

import torch

from vptbench.errors import VptbenchError, first_line
from vptbench.harness.runner import Observer, PlannedExperiment, Workbench, run_one


def params_of(plan: PlannedExperiment) -> dict:
    return plan.config.model_dump(mode="json") if plan.config is not None else dict(plan.spec.params)


def reference_of(plan: PlannedExperiment) -> dict | None:
    return plan.spec.reference.model_dump() if plan.spec.reference else None


def run_guarded(bench: Workbench, plan: PlannedExperiment, seed: int, observer: Observer, retry_oom: bool = False) -> dict:
    """The run's record; an exception gives a `failed` row with one line (the traceback rides along
    under "traceback" for the suite's errors.log), CUDA out-of-memory gives `oom`."""
    if plan.tuner is None:
        return failed_record(plan, seed, plan.error)
    try:
        record = run_one(bench, plan, seed, observer)
    except torch.cuda.OutOfMemoryError:
        record = None  # handled below: inside this block the traceback keeps the failed run's tensors
    except VptbenchError as exc:
        return failed_record(plan, seed, str(exc))
    except Exception as exc:  # noqa: BLE001 - a tuner's bug must not end the suite
        record = failed_record(plan, seed, f"{type(exc).__name__}: {first_line(exc)} (traceback in errors.log)")
        return {**record, "traceback": traceback.format_exc()}
    if record is None:
        gc.collect()
        torch.cuda.empty_cache()
        training = plan.training
        if retry_oom and training.accumulation_steps * 2 <= training.batch_size:
            smaller = training.model_copy(update={"accumulation_steps": training.accumulation_steps * 2})
            return run_guarded(bench, replace(plan, training=smaller), seed, observer, retry_oom)
        micro = -(-training.batch_size // training.accumulation_steps)
        message = (
            f"CUDA out of memory at batch size {training.batch_size} (micro-batches of {micro}); lower batch_size, "
            "or pass --retry-oom to accumulate gradients over smaller micro-batches at the same effective batch"
        )
        return {**failed_record(plan, seed, message), "status": "oom"}
    return {**record, "params": params_of(plan), "reference": reference_of(plan)}


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
