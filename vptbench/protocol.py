"""The contract between the harness and a tuning strategy.

The harness owns seeds, data, the optimiser, the loop, timing, parameter counts and I/O.
A tuner owns only how it changes the model and how a batch becomes class logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import CLIPModel, PreTrainedTokenizerBase


class TunerConfig(BaseModel):
    """Base for a tuner's params table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class Task:
    """What a tuner may know about the classification task. The harness hands one task to every run
    of a suite, so `reuse` can share frozen work between them."""

    class_names: list[str]
    templates: list[str]
    tokenizer: PreTrainedTokenizerBase
    _reused: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def reuse(self, key: str, compute: Callable[[], Tensor]) -> Tensor:
        """`compute()` once per suite, a copy for each caller after that: for values that depend
        only on the untouched frozen model and this task, e.g. class-text features; `key` names
        everything else they depend on."""
        if key not in self._reused:
            self._reused[key] = compute().detach()
        return self._reused[key].clone()


@runtime_checkable
class Tuner(Protocol):
    """A strategy: an `nn.Module` built as `Tuner(config, clip, task)`.

    The harness hands over `clip` with every parameter frozen; the tuner unfreezes what it
    trains and registers any parameters it adds. `forward` maps normalised pixel values
    `(batch, 3, H, W)` to class logits `(batch, num_classes)`. A tuner with no trainable
    parameter is evaluated without training.
    """

    Config: ClassVar[type[TunerConfig]]

    def __init__(self, config: Any, clip: CLIPModel, task: Task) -> None: ...

    def forward(self, pixel_values: Tensor) -> Tensor: ...

    def parameters(self, recurse: bool = True) -> Any: ...


@runtime_checkable
class FeatureTuner(Tuner, Protocol):
    """A tuner whose trainable part sits on top of a frozen, deterministic encoder.

    The harness computes `encode` once per image and trains `classify` on the cached
    features: the frozen backbone never runs again across epochs.
    """

    def encode(self, pixel_values: Tensor) -> Tensor: ...

    def classify(self, features: Tensor) -> Tensor: ...


REQUIRED_METHODS = ("forward", "parameters", "train", "eval", "to")


def protocol_problems(obj: Any) -> list[str]:
    """What keeps `obj` from being a usable tuner class (empty when it is one)."""
    if not isinstance(obj, type):
        kind = type(obj).__name__
        return [f"is {'an' if kind[0].lower() in 'aeiou' else 'a'} {kind}, not a class"]
    problems = []
    config = getattr(obj, "Config", None)
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        problems.append("has no `Config` pydantic model")
    problems += [f"has no `{name}` method" for name in REQUIRED_METHODS if not callable(getattr(obj, name, None))]
    try:
        inspect.signature(obj).bind(None, None, None)
    except TypeError:
        problems.append("cannot be constructed as Tuner(config, clip, task)")
    except ValueError:  # no signature to inspect (some builtins): leave it to the first run
        pass
    return problems
