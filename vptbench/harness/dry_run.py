"""A suite's experiments built and counted on the real model, with no data and no training."""

from __future__ import annotations

from typing import Any

from vptbench.errors import first_line
from vptbench.harness.counting import count_parameters
from vptbench.harness.planning import SuitePlan
from vptbench.harness.workbench import task_for
from vptbench.models import load_model


def dry_run(plan: SuitePlan) -> list[dict]:
    """Each experiment's row: its parameter counts, or why it could not be built."""
    model = load_model(plan.model_name, plan.model)
    task = task_for(plan.dataset, model)
    rows = []
    for experiment in plan.experiments:
        row: dict[str, Any] = {"experiment": experiment.id, "tuner": experiment.spec.tuner, "status": "ok", "error": ""}
        if experiment.tuner is None:
            rows.append({**row, "status": "failed", "error": experiment.error})
            continue
        try:
            tuner, _ = experiment.build(model.clip, task)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is that experiment's row, as in a real run
            rows.append({**row, "status": "failed", "error": f"{type(exc).__name__}: {first_line(exc)}"})
            continue
        trainable, total = count_parameters(tuner)
        reference = experiment.spec.reference.trainable_params if experiment.spec.reference else None
        rows.append({**row, "trainable_params": trainable, "total_params": total, "ref_trainable_params": reference})
    return rows
