"""Throughput of each strategy on a synthetic batch: images/s, step time, memory, counted FLOPs.

Timing follows timm's benchmark: warm-up steps first, the device synchronised around the timed
steps, and FLOPs counted by torch's FlopCounterMode rather than estimated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch.utils.flop_counter import FlopCounterMode

from vptbench import contract
from vptbench.clip.vision import image_size
from vptbench.errors import VptbenchError, first_line
from vptbench.harness.counting import count_parameters
from vptbench.harness.device import clock, free_failed_attempt, peak_memory, reset_peak_memory
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.seeding import seed_everything
from vptbench.harness.trainer import Precision, make_optimizer, train_step

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel

    from vptbench.protocol import FeatureTuner

# Dense tensor-core peaks in TFLOP/s, (bf16 or fp16, tf32), for model-FLOPs utilisation; the more
# specific names first, as a card's name contains its family's ("NVIDIA H100 PCIe").
PEAK_TFLOPS = {
    "H100 PCIe": (756.0, 378.0), "H100 NVL": (835.0, 418.0), "H100": (989.0, 494.0), "H200": (989.0, 494.0),
    "A100": (312.0, 156.0), "L40S": (362.0, 183.0), "RTX 4090": (165.0, 82.6),
}  # fmt: skip


@dataclass
class ThroughputRow:
    experiment: str
    tuner: str
    mode: str  # train: optimiser steps; forward: the frozen encoder the harness caches
    precision: str  # as resolved: "auto" becomes bf16, fp16 or fp32
    batch_size: int
    trainable_params: int
    step_ms: float
    images_per_second: float
    gflops_per_image: float
    achieved_tflops: float
    mfu: float | None
    peak_tflops: float | None  # what MFU is measured against
    peak_memory_mb: float

    def as_dict(self) -> dict:
        return asdict(self)


def device_peak_tflops(device: torch.device, precision: Precision) -> float | None:
    """The card's dense peak at the precision its matmuls run in: half-precision tensor cores under
    autocast, TF32 for fp32 (the harness enables it on CUDA); None when unknown."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peaks = next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)
    if peaks is None:
        return None
    if precision.dtype is not None:
        return peaks[0]
    return peaks[1] if torch.backends.cuda.matmul.allow_tf32 else None


def measure(
    plan: PlannedExperiment, clip: CLIPModel, task, device: torch.device, batch_size: int, steps: int,
    warmup: int, precision_name: str, compile_model: bool = False, peak_tflops: float | None = None,
    on_step: Callable[[], None] = lambda: None,
) -> ThroughputRow:  # fmt: skip
    """Time `steps` steps after `warmup`; a tuner without trainable weights is timed as a forward pass.
    Seeded as a run is, so the same deterministic kernels are timed. `on_step` is called after each
    of the 1 + warmup + steps steps (the first counts FLOPs) for a progress bar, whose update costs
    microseconds against a step."""
    seed_everything(0)
    tuner = plan.build(clip, task)[0].to(device)
    trainable, _ = count_parameters(tuner)
    precision = Precision(precision_name, device)
    size = image_size(clip)
    pixels = torch.randn(batch_size, 3, size, size, device=device)
    labels = torch.randint(0, task.num_classes, (batch_size,), device=device)
    forward_only = not trainable or contract.caches_features(tuner)
    plain = (cast("FeatureTuner", tuner).encode if contract.caches_features(tuner) else tuner) if forward_only else tuner
    fast = torch.compile(plain) if compile_model else plain
    if forward_only:
        tuner.eval()

        def step(fn) -> None:
            with torch.no_grad(), precision.autocast():
                fn(pixels)
    else:
        optimizer = make_optimizer([p for p in tuner.parameters() if p.requires_grad], plan.training, device)
        tuner.train()

        def step(fn) -> None:
            train_step(fn, pixels, labels, optimizer, precision)

    with FlopCounterMode(display=False) as counter:  # counted on the eager module: compile hides ops
        step(plain)
    flops = counter.get_total_flops()
    on_step()
    for _ in range(warmup):
        step(fast)
        on_step()
    reset_peak_memory(device)
    start = clock(device)
    for _ in range(steps):
        step(fast)
        on_step()
    seconds = (clock(device) - start) / steps
    memory, _ = peak_memory(device)
    achieved = flops / seconds / 1e12
    peak = peak_tflops or device_peak_tflops(device, precision)
    return ThroughputRow(
        plan.id, plan.spec.tuner, "forward" if forward_only else "train", precision.name, batch_size, trainable,
        seconds * 1e3, batch_size / seconds, flops / batch_size / 1e9, achieved,
        achieved / peak if peak else None, peak, memory,
    )  # fmt: skip


def measure_row(plan: PlannedExperiment, *args, **kwargs) -> dict:
    """`measure` as a row; a strategy that fails (out of memory, a compile error) becomes a row with
    its error, so the other strategies' figures are kept."""
    try:
        return measure(plan, *args, **kwargs).as_dict()
    except VptbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - one strategy's failure must not lose the others
        error = f"{type(exc).__name__}: {first_line(exc)}"
    free_failed_attempt()
    return {"experiment": plan.id, "tuner": plan.spec.tuner, "error": error}
