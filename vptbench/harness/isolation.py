"""Runs in a child process, so that one strategy's crash, memory blow-up or hang costs that run alone.

The child gets the suite's workbench (model, decoded data, task) once, through shared memory, and
runs one (experiment, seed) after another as the parent sends them, reporting progress back. When a
run segfaults, is killed by the operating system's out-of-memory killer or outlives its time limit,
its record says so (`crashed`, `oom`, `timeout`) and a fresh child takes over for the next run.
Each run is seeded and independent, so its numbers are those of a run in the parent process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from vptbench.harness.executors import Pending
from vptbench.harness.guarded import failed_record, run_guarded
from vptbench.harness.observer import Observer
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.trainer import EpochRecord
from vptbench.harness.workbench import Workbench
from vptbench.results.records import RunRecord, Status

POLL_SECONDS = 0.2  # how often a waiting parent checks that its child lives and has time left


@dataclass
class _Child:
    process: Any  # a multiprocessing Process of torch's spawn context
    connection: Connection


class ProcessExecutor:
    """One run after another, each in the suite's child process, with live progress."""

    runs_here = False  # the data stays on the CPU here; the child moves it to its device

    def __init__(self) -> None:
        self._current: Pending = []
        self._child: _Child | None = None

    def run(self, bench: Workbench, pending: Pending, observer: Observer, retry_oom: bool) -> Generator[RunRecord, None, None]:
        try:
            for experiment, seed in pending:
                self._current = [(experiment, seed)]
                record = self._run_one(bench, experiment, seed, observer, retry_oom)
                self._current = []
                yield record
        except BaseException:  # stopped (Ctrl-C, SIGTERM, the suite closing it): the child goes with it
            self._stop()
            raise

    def in_flight(self) -> Pending:
        return self._current

    def close(self) -> None:
        """The suite is done: its child goes (kept until then, with its cached features, for a
        search's next round of trials)."""
        self._stop()

    def _run_one(self, bench: Workbench, experiment: PlannedExperiment, seed: int, observer: Observer, retry_oom: bool) -> RunRecord:
        child = self._child or self._start(bench)
        child.connection.send((experiment, seed, retry_oom))
        limit = experiment.training.timeout
        deadline = None  # the clock starts when the child takes the run, not while it starts up
        while True:
            if child.connection.poll(POLL_SECONDS):
                try:
                    kind, payload = child.connection.recv()
                except (EOFError, OSError):  # it died mid-message: its exit code says how
                    return self._lost(child, experiment, seed)
                if kind == "taken":
                    deadline = time.monotonic() + limit if limit else None
                elif kind == "started":
                    observer.run_started(*payload)
                elif kind == "epoch":
                    observer.epoch_done(payload)
                else:
                    return payload
            elif not child.process.is_alive():
                return self._lost(child, experiment, seed)
            if deadline is not None and time.monotonic() > deadline:  # checked however often it reports
                self._stop()
                return failed_record(experiment, seed, f"exceeded its time limit of {limit:g} s and was stopped", Status.timeout)

    def _start(self, bench: Workbench) -> _Child:
        import torch.multiprocessing as mp  # its pickler hands tensors over in shared memory

        context = mp.get_context("spawn")  # never fork a process that may hold CUDA or OpenMP threads
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_child_main, args=(child_end, bench, os.getpid()), name="vptbench-run", daemon=True)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: Ctrl-C is this process's to handle
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        child_end.close()
        self._child = _Child(process, parent_end)
        return self._child

    def _lost(self, child: _Child, experiment: PlannedExperiment, seed: int) -> RunRecord:
        """The record of a run whose process died, named by how it died."""
        child.process.join(timeout=10)
        self._child = None
        code = child.process.exitcode
        if code == -signal.SIGKILL:  # not ours: we kill only on timeouts and stops
            return failed_record(experiment, seed, "its process was killed (SIGKILL), most likely by the operating system's out-of-memory killer", Status.oom)
        died = f"died of {signal.Signals(-code).name}" if code is not None and code < 0 else f"exited with code {code}"
        return failed_record(experiment, seed, f"its process {died}; the suite went on in a new one", Status.crashed)

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        child.connection.close()
        child.process.kill()
        child.process.join(timeout=10)


class _PipeObserver:
    """The child's observer: progress goes back to the parent, which draws it."""

    progress = None

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None:
        self.connection.send(("started", (experiment_id, seed, epochs)))

    def epoch_done(self, record: EpochRecord) -> None:
        self.connection.send(("epoch", record))

    def run_done(self, record: RunRecord) -> None:
        pass

    def expect(self, runs: int) -> None:
        pass


def _child_main(connection: Connection, bench: Workbench, parent: int) -> None:
    """Run what the parent sends until it sends nothing more or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    local = replace(bench, data=bench.data.to(bench.device))
    observer = _PipeObserver(connection)
    while True:
        try:
            experiment, seed, retry_oom = connection.recv()
        except (EOFError, OSError):
            return
        connection.send(("taken", None))
        connection.send(("done", run_guarded(local, experiment, seed, observer, retry_oom)))


def _die_with(parent: int) -> None:
    """On Linux, the kernel kills this process when its parent dies (`kill -9`, the out-of-memory
    killer): an orphan would train on for nothing. Elsewhere it ends when it next reads the pipe."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
