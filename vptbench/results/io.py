"""Files written whole or not at all, as strict JSON, and the quick checks that a folder takes them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from vptbench.errors import WriteError

UMASK = os.umask(0o022)  # reading the umask means setting it: put it straight back
os.umask(UMASK)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Temporary file, fsync, rename: a reader (or a resume after kill -9) never sees half a file."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write '{path}': {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp's owner-only mode would hide results from colleagues
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"cannot write '{path}': {exc.strerror}") from exc
        raise


def append_text(path: Path, text: str) -> None:
    """Lines added to the end of a file (a row of a live CSV); a reader sees whole lines, since each
    append is one write of whole lines."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise WriteError(f"cannot write '{path}': {exc.strerror}") from exc


def json_text(data: Any) -> str:
    """Strict JSON: NaN and infinity become null, as no JSON parser need accept them."""
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json_text(data))


def read_json(path: Path) -> tuple[Any, str]:
    """A JSON file's content and "", or None and why it could not be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, str(exc)


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be made in `folder` or, where it does not exist yet, in the nearest folder
    above it that does; None when they can. A quick check before minutes of loading."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"'{existing}' is a file"
    return write_problem(existing)


def write_problem(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None; checked by trying, as permissions alone
    miss read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
