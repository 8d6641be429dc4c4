"""Read `benchmark.toml` and turn every problem into one line naming file and TOML path."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.config import ExtraValues
from pydantic_core import ErrorDetails

from vptbench.errors import ConfigError, first_few
from vptbench.registry.schema import DatasetSpec, ModelSpec, Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Spec = TypeVar("Spec", ModelSpec, DatasetSpec)
PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "benchmark.toml"


def default_config_path() -> Path:
    """`./benchmark.toml` when the user has one, else the copy shipped in the package."""
    local = Path("benchmark.toml")
    return local if local.is_file() else PACKAGED_CONFIG


def load_registry(path: Path | None = None) -> tuple[Registry, Path]:
    """Parse and validate the registry's outer schema (tuner params are checked later)."""
    path = Path(path) if path else default_config_path()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not a TOML error
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from exc
    registry = validate(Registry, data, path)
    models = {name: paths_from(path.parent, spec) for name, spec in registry.models.items()}
    datasets = {name: paths_from(path.parent, spec) for name, spec in registry.datasets.items()}
    return registry.model_copy(update={"models": models, "datasets": datasets}), path


def paths_from(folder: Path, spec: Spec) -> Spec:
    """A relative model or dataset `path` is relative to the config file, as a user reading it
    expects, not to wherever vptbench is started (or resumed) from; run.json records it absolute."""
    if not spec.path:
        return spec
    return spec.model_copy(update={"path": os.path.normpath(folder.absolute() / Path(spec.path).expanduser())})


def validate(model: type[BaseModel], data: Any, path: Path, prefix: str = "", extra: ExtraValues | None = None, strict: bool = True) -> Any:
    """Validate `data` against `model` (`extra` overrides how every model in it treats unknown keys);
    errors carry the file and the TOML path of the culprit. TOML values are JSON's, so validation is
    pydantic's strict JSON mode: `epochs = "4"`, `num_tokens = true` or `bias = "no"` are typos, not
    values to coerce, while a string still becomes a Path or an Enum and a list a tuple."""
    text = json.dumps(data, default=str)  # TOML's dates and times as text
    try:
        return model.model_validate_json(text, strict=strict, extra=extra)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path, prefix)) from exc


def format_validation_error(exc: ValidationError, path: Path, prefix: str = "", shown: int = 3) -> str:
    """One line naming the first few errors (all of a small table's typos at once), with a count of
    the others."""
    errors = exc.errors(include_url=False)
    return f"{path}: {first_few([_one_error(error, prefix) for error in errors], shown, sep='; ')}"


def _one_error(error: ErrorDetails, prefix: str) -> str:
    loc = ".".join(str(part) for part in (*filter(None, prefix.split(".")), *error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif error["type"].endswith("_type"):  # a value of the wrong TOML type: show what was written
        message += f" (got {json.dumps(error['input'], default=str, ensure_ascii=False)})"
    return f"{loc}: {message}" if loc else message
