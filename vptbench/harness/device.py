"""Device choice, clocks that wait for the device, peak memory, and where memory ran out."""

from __future__ import annotations

import contextlib
import gc
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from vptbench.errors import UsageError

CLEAR_REFS, STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")
_rss_peak_resets = False  # whether the kernel has accepted a reset of this process's peak RSS


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps") or (device.type != "cuda" and device.index):
        raise UsageError(f"--device: '{name}' is not a device vptbench runs on (use auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda" and device.index is not None and torch.cuda.is_available() and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device: '{name}' does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device: '{name}' requested but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device: '{name}' requested but MPS is not available on this machine")
    return device


def use_device(name: str = "auto") -> torch.device:
    """The device to compute on, with TF32 matmuls on CUDA: every place that computes calls this,
    so local runs, Ray workers and `bench` use the same kernels."""
    device = resolve_device(name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def clock(device: torch.device) -> float:
    """Wall time after the device has finished queued work (timm's cuda_timestamp)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator statistics, or on Linux the process's peak RSS (the kernel
    resets it on request), so each run reports its own peak rather than the largest one so far."""
    global _rss_peak_resets
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        CLEAR_REFS.write_text("5")
        _rss_peak_resets = True
    except OSError:  # not Linux, or /proc is read-only: the process-lifetime peak it is
        pass


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(MiB, kind): CUDA peak allocated or peak RSS since the last reset, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda-peak-allocated"
    if _rss_peak_resets:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10, "peak-rss-since-reset"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process-peak-rss"


def free_failed_attempt() -> None:
    """Free what a failed attempt left behind; call it outside the `except` block, whose traceback
    keeps the attempt's tensors alive."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class OutOfMemory(RuntimeError):
    """CUDA ran out of memory; `during` says where, since only training can retry in smaller micro-batches."""

    def __init__(self, during: str) -> None:
        super().__init__(f"CUDA out of memory while {during}")
        self.during = during


@contextlib.contextmanager
def phase(during: str) -> Iterator[None]:
    """Whatever runs inside that exhausts CUDA memory raises OutOfMemory(during)."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(during) from exc
