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
    """A tuner whose trainable part sits on top of a frozen, deterministic encoder, and says so.

    Opting in is explicit: the class attribute `caches_features = True`, with `encode` and
    `classify` such that `forward(x) == classify(encode(x))`. The harness then computes `encode`
    once per image, in eval mode without gradients, and trains and evaluates `classify` on those
    features: the frozen backbone never runs again across epochs, and runs whose `feature_key()`
    is equal share the features (on the same frozen CLIP and precision). Without the attribute,
    methods named `encode` and `classify` are the tuner's own business and `forward` runs each step.

    A run fails, naming the tuner, when `encode`'s output depends on a trainable parameter.
    `isinstance(obj, FeatureTuner)` only says all members exist; the harness asks for
    `caches_features = True`, `encode` and `classify` (`vptbench.contract.caches_features`), and
    supplies `feature_key()` when the tuner has none.
    """

    caches_features: ClassVar[bool]
    """True opts in to feature caching (False, or no attribute: `forward` runs every step)."""

    def encode(self, pixel_values: Tensor) -> Tensor:
        """Normalised pixels `(batch, 3, H, W)` to features `(batch, ...)`. It must not depend on
        trainable parameters, nor on anything but the frozen model, the tuner's config and its own
        frozen tensors (what the default `feature_key` covers), unless `feature_key()` names it."""
        ...

    def classify(self, features: Tensor) -> Tensor:
        """`encode`'s features to logits `(batch, num_classes)`: the part that trains."""
        ...

    def feature_key(self) -> str | None:
        """Optional: names what `encode` computes; runs whose keys are equal share the features.

        Without it, the harness uses `vptbench.contract.default_feature_key`: the tuner class's
        qualified name, a hash of its `encode` source, all of its config and its own frozen tensors
        outside CLIP. So runs and seeds of one class and config share features, and two classes
        never do. Define it to share more (e.g. between classes with the same `encode`, or configs
        that differ only in what `classify` uses), naming everything `encode` depends on besides
        the frozen CLIP; return None to have features computed afresh each run.
        """
        ...


REQUIRED_METHODS = ("forward", "parameters", "train", "eval", "to")
FEATURE_METHODS = ("encode", "classify")  # required of a tuner that sets `caches_features = True`


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
    opt_in = getattr(obj, "caches_features", False)
    if not isinstance(opt_in, bool):
        problems.append(f"has `caches_features = {opt_in!r}`, expected True or False")
    elif opt_in:
        problems += [f"sets `caches_features = True` but has no `{name}` method" for name in FEATURE_METHODS if not callable(getattr(obj, name, None))]
    try:
        inspect.signature(obj).bind(None, None, None)
    except TypeError:
        problems.append("cannot be constructed as Tuner(config, clip, task)")
    except ValueError:  # no signature to inspect (some builtins): leave it to the first run
        pass
    return problems
