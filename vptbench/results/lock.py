"""One writer per run directory; a lock left by a dead process is taken over, not obeyed forever."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from vptbench.errors import UsageError, WriteError


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"

    def __enter__(self) -> RunLock:
        try:
            return self._acquire()
        except OSError as exc:  # a read-only folder, say
            raise WriteError(f"cannot lock '{self.path.parent}': {exc.strerror}") from exc

    def _acquire(self) -> RunLock:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError as exc:
                try:
                    holder = self.path.read_text().strip()
                except FileNotFoundError:  # released between the two calls: try again
                    continue
                if _alive(holder):
                    raise self._in_use(holder) from exc
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            return self
        raise UsageError(f"cannot lock '{self.path.parent}'")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)

    def check_free(self) -> None:
        """Fail now, before minutes of loading, if a live run holds the directory; the lock itself
        is taken when writing starts."""
        try:
            holder = self.path.read_text().strip()
        except OSError:
            return
        if _alive(holder):
            raise self._in_use(holder)

    def _in_use(self, holder: str) -> UsageError:
        return UsageError(f"'{self.path.parent}' is in use by another vptbench run (process {holder}); wait for it to finish")


def _alive(holder: str) -> bool:
    """Whether the `host pid` that wrote a lock still runs (a lock from another host counts as alive)."""
    host, _, pid = holder.partition(" ")
    if not pid.isdigit():
        return not holder  # empty: its writer is between creating and writing it
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
