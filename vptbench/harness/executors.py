"""Where a suite's (experiment, seed) pairs run: in a child process (isolation.py), in this process,
or as tasks on a Ray cluster.

An executor only decides where runs happen and yields their records as they finish; saving,
reports, resume and the run lock stay with the suite, so every executor writes the same run
directory. Runs are seeded and independent, so the results do not depend on the executor.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Generator
from dataclasses import replace
from typing import Protocol

import torch

from vptbench.errors import UsageError, first_line
from vptbench.harness.guarded import failed_record, run_guarded
from vptbench.harness.observer import Observer, QuietObserver
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.workbench import Workbench
from vptbench.results.records import RunRecord

Pending = list[tuple[PlannedExperiment, int]]


class Executor(Protocol):
    runs_here: bool  # runs use this process's device (else the suite's data stays on the CPU for the workers)

    def run(self, bench: Workbench, pending: Pending, observer: Observer, retry_oom: bool) -> Generator[RunRecord, None, None]: ...

    def in_flight(self) -> Pending:
        """The runs started but not finished: what an interrupt leaves behind."""
        ...

    def close(self) -> None:
        """The suite is done with it: what it holds between calls of `run` goes."""
        ...


class InlineExecutor:
    """One run after another in this process, with live progress: for debugging, since a crash or a
    hang of one run is the suite's, and time limits are not enforced."""

    runs_here = True

    def __init__(self) -> None:
        self._current: Pending = []

    def run(self, bench: Workbench, pending: Pending, observer: Observer, retry_oom: bool) -> Generator[RunRecord, None, None]:
        for experiment, seed in pending:
            self._current = [(experiment, seed)]
            record = run_guarded(bench, experiment, seed, observer, retry_oom)
            self._current = []
            yield record

    def in_flight(self) -> Pending:
        return self._current

    def close(self) -> None:
        pass


def _remote_run(bench: Workbench, experiment: PlannedExperiment, seed: int, device_name: str, retry_oom: bool) -> RunRecord:
    """A Ray task: the shared workbench (from the object store) on this worker's device."""
    from vptbench.harness.device import use_device

    device = use_device("cuda" if device_name.startswith("cuda") else device_name)  # Ray shows a task only its own GPU
    local = replace(bench, data=bench.data.to(device), device=device)
    return run_guarded(local, experiment, seed, QuietObserver(), retry_oom)


class RayExecutor:
    """Each run is a Ray task (one GPU on CUDA, one CPU otherwise); a task whose worker dies is
    retried `max_retries` times, then recorded as failed; Ctrl-C cancels what is outstanding."""

    runs_here = False

    def __init__(self, address: str | None, device_name: str, max_retries: int = 2) -> None:
        try:
            import ray
        except ImportError as exc:
            raise UsageError("--executor ray needs Ray: pip install 'vptbench[ray]'") from exc
        self.ray, self.address, self.device_name, self.max_retries = ray, address, device_name, max_retries
        self._outstanding: dict = {}
        if address:
            check_reachable(address)

    def run(self, bench: Workbench, pending: Pending, observer: Observer, retry_oom: bool) -> Generator[RunRecord, None, None]:
        ray = self.ray
        if not ray.is_initialized():
            logging.getLogger(RAY_TOKEN_LOGGER).addFilter(_drop_token_notice)
            on_sigterm = signal.getsignal(signal.SIGTERM)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - connection errors come in many types
                raise UsageError(f"--address: cannot connect to a Ray cluster at '{self.address}': {first_line(exc)}") from exc
            finally:  # ray.init installs its own SIGTERM handler, which would kill the suite unrecorded
                if on_sigterm is not None and threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, on_sigterm)
        gpu = self.device_name.startswith("cuda") or (self.device_name == "auto" and torch.cuda.is_available())
        task = ray.remote(_remote_run).options(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1, max_retries=self.max_retries)
        shared = ray.put(replace(bench, data=bench.data.to("cpu")))  # one copy in the object store for every task
        self._outstanding = {task.remote(shared, e, seed, self.device_name, retry_oom): (e, seed) for e, seed in pending}
        try:
            while self._outstanding:
                (ready,), _ = ray.wait(list(self._outstanding), num_returns=1)
                experiment, seed = self._outstanding.pop(ready)
                try:
                    yield ray.get(ready)
                except ray.exceptions.RayError as exc:  # the worker died more often than retries allow
                    yield failed_record(experiment, seed, f"Ray task failed after {self.max_retries} retries: {first_line(exc)}")
        finally:  # Ctrl-C here, or the suite closing this generator: cancel what the cluster still runs
            for ref in self._outstanding:
                ray.cancel(ref, force=True)

    def in_flight(self) -> Pending:
        return list(self._outstanding.values())

    def close(self) -> None:
        pass


RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


def _drop_token_notice(record: logging.LogRecord) -> bool:
    """A new local cluster announces that it uses token authentication, between our banner and the
    progress bar; that notice goes. Ray's warning that authentication is off stays."""
    return not record.getMessage().startswith("Token authentication is enabled")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A `host:port` (or `ray://host:port`) that nothing answers fails now, in seconds: Ray itself
    retries for minutes, logging as it goes. `auto` and other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"--address: nothing answers at '{address}' ({exc.strerror or type(exc).__name__})") from exc
