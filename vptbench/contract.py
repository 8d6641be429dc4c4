"""The tuner contract of `vptbench.protocol` as the harness checks it, in one wording.

`vptbench run` (harness/runner.py) fails a run whose tuner breaks what would otherwise corrupt its
numbers without a sound: logits of another shape than (batch, classes), or a cached `encode` that
depends on trainable parameters. `vptbench.testing.check_tuner` runs the same checks, plus
`forward == classify(encode)` and a usable `feature_key()`, on a tiny CLIP. Every failure is a
`ContractError` whose message starts with the tuner's class name.

Feature caching is an opt-in: a tuner with `caches_features = True` (`vptbench.protocol.FeatureTuner`)
has `encode` computed once per image, and its features are shared between runs whose
`feature_key` (its own, else `default_feature_key`) is equal, on the same frozen CLIP.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from vptbench.errors import PluginError

if TYPE_CHECKING:
    from vptbench.protocol import FeatureTuner


class ContractError(PluginError):
    """A tuner breaks the contract the harness relies on; the message names the tuner."""


def caches_features(tuner: Any) -> bool:
    """Whether the harness caches `encode` for this tuner (instance or class): it opted in with the
    class attribute `caches_features = True`. Methods named `encode` and `classify` alone do not."""
    cls = tuner if isinstance(tuner, type) else type(tuner)
    return getattr(cls, "caches_features", False) is True


def undeclared_feature_methods(tuner: Any) -> bool:
    """A tuner with `encode` and `classify` that says nothing about caching (no `caches_features`):
    before the opt-in, such a tuner had its features cached; now `forward` runs every step."""
    cls = tuner if isinstance(tuner, type) else type(tuner)
    return not hasattr(cls, "caches_features") and callable(getattr(cls, "encode", None)) and callable(getattr(cls, "classify", None))


def source_digest(function: Callable) -> str:
    """12 hex digits of a function's source, so that an edited function names new features;
    `no-source` where Python kept none (a REPL, `exec`)."""
    try:
        return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]
    except (OSError, TypeError):
        return "no-source"


def default_feature_key(tuner: nn.Module, config: Any, clip: nn.Module | None = None) -> str:
    """The key of a feature tuner that defines no `feature_key()`: its class's qualified name, a hash
    of its `encode` source, its whole config, and its own frozen tensors outside `clip` (a frozen
    projection drawn from the seed is then not shared between seeds). Two tuner classes never share
    features by default; runs and seeds of one class with one config do. The harness adds the frozen
    CLIP's weights and settings and the precision (and, for `--feature-cache`, pixels and versions)."""
    cls = cast("type[FeatureTuner]", type(tuner))
    settings = hashlib.sha256(_config_text(config).encode()).hexdigest()[:12]
    return f"{cls.__module__}.{cls.__qualname__}|encode:{source_digest(cls.encode)}|config:{settings}|frozen:{_frozen_extras_digest(tuner, clip)}"


def feature_key(tuner: nn.Module, config: Any, clip: nn.Module | None = None) -> str | None:
    """The key under which the harness shares `tuner`'s features: its own `feature_key()` when it has
    one (a str, or None for features computed afresh each run), else `default_feature_key`."""
    if not callable(getattr(tuner, "feature_key", None)):
        return default_feature_key(tuner, config, clip)
    key = cast("FeatureTuner", tuner).feature_key()
    if key is not None and not (isinstance(key, str) and key):
        raise ContractError(f"{_name(tuner)}.feature_key() returned {key!r}, expected a non-empty str naming what encode computes (or None: not shared)")
    return key


def check_logits_shape(tuner: Any, logits: Tensor, batch: int, num_classes: int) -> None:
    """A tuner's logits must be (batch, classes): an extra column would otherwise pass through
    cross-entropy and argmax unnoticed and turn every number of the run into nonsense."""
    shape = tuple(logits.shape)
    if shape != (batch, num_classes):
        raise ContractError(f"{_name(tuner)} returned logits of shape {shape}, expected (batch, classes) = ({batch}, {num_classes})")


@torch.no_grad()
def check_logits(tuner: nn.Module, logits_fn: Callable[[Tensor], Tensor], sample: Tensor, num_classes: int) -> None:
    """`check_logits_shape` on `logits_fn(sample)` (the tuner, or its `classify` on features)."""
    tuner.eval()  # no dropout: the check must not draw from the run's random stream
    check_logits_shape(tuner, logits_fn(sample), len(sample), num_classes)


def check_frozen_encoder(tuner: nn.Module, sample: Tensor) -> None:
    """Features are encoded once and only `classify` trains: an `encode` that depends on trainable
    parameters would leave them untrained while counting them, so that run fails instead."""
    with torch.enable_grad():
        if cast("FeatureTuner", tuner.eval()).encode(sample).requires_grad:
            raise ContractError(
                f"{_name(tuner)}.encode depends on trainable parameters, but the harness encodes once and trains only classify; "
                "freeze what encode uses, or set caches_features = False"
            )


@torch.no_grad()
def check_encode_then_classify(tuner: nn.Module, pixels: Tensor, logits: Tensor, atol: float = 1e-5) -> None:
    """The harness trains and evaluates `classify(encode(x))` in place of `forward(x)` (`logits`,
    computed in eval mode): the two must agree."""
    feature_tuner = cast("FeatureTuner", tuner.eval())  # eval() returns the tuner itself
    if not torch.allclose(feature_tuner.classify(feature_tuner.encode(pixels)), logits, atol=atol):
        raise ContractError(f"{_name(tuner)}.forward(x) differs from classify(encode(x)): caching encode would change its results")


def _name(tuner: Any) -> str:
    return tuner.__name__ if isinstance(tuner, type) else type(tuner).__name__


def _config_text(config: Any) -> str:
    """The config as sorted JSON (its repr where it does not serialise)."""
    try:
        return json.dumps(config.model_dump(mode="json"), sort_keys=True, default=str)
    except Exception:  # noqa: BLE001 - not a pydantic model, or a field pydantic cannot serialise
        return repr(config)


def _frozen_extras_digest(tuner: nn.Module, clip: nn.Module | None) -> str:
    """A hash of the tuner's frozen parameters and buffers that are not `clip`'s (those the harness
    hashes itself); trainable ones are left out, as they differ between seeds and never reach encode."""
    pretrained = {id(t) for t in (*clip.parameters(), *clip.buffers())} if clip is not None else set()
    digest = hashlib.sha256()
    for name, tensor in (*tuner.named_parameters(), *tuner.named_buffers()):
        if id(tensor) in pretrained or tensor.requires_grad:
            continue
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # an ndarray is a buffer; numpy's stubs say so only from Python 3.12
    return digest.hexdigest()[:12]
