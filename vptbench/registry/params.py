"""How a tuner's `params` table is validated, by the harness and by `check_tuner` alike."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, BeforeValidator, WrapValidator

from vptbench.registry.load import validate


def validate_params(config: type[BaseModel], params: dict, path: Path, prefix: str = "") -> Any:
    """Unknown keys are errors at any depth (pydantic's default silently drops them, so a typo would
    run the default) unless a model declares `extra` "allow" or "ignore" itself. Values are checked in
    strict JSON mode unless a model rewrites its input first (a `before` or `wrap` validator):
    pydantic checks such output in strict *Python* mode, which refuses a list for a tuple."""
    models = list(_models_within(config))
    lenient = any(model.model_config.get("extra") in ("allow", "ignore") for model in models)
    strict = not any(_rewrites_input(model) for model in models)
    return validate(config, params, path, prefix, extra=None if lenient else "forbid", strict=strict)


def _models_within(model: type[BaseModel], seen: set[type] | None = None) -> Iterator[type[BaseModel]]:
    """`model` and every model its fields nest, however deep (lists, unions, dicts of models)."""
    seen = seen if seen is not None else set()
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for nested in _models_in(field.annotation):
            yield from _models_within(nested, seen)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _rewrites_input(model: type[BaseModel]) -> bool:
    decorators = model.__pydantic_decorators__
    modes = [d.info.mode for d in decorators.model_validators.values()] + [d.info.mode for d in decorators.field_validators.values()]
    annotated = [item for field in model.model_fields.values() for item in field.metadata]
    return any(mode in ("before", "wrap") for mode in modes) or any(isinstance(item, (BeforeValidator, WrapValidator)) for item in annotated)
