"""Run one (experiment, seed): build the tuner, train on train, select on val, test once."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from vptbench.data import ImageData, make_splits, normalize
from vptbench.errors import PluginError
from vptbench.harness.device import clock, describe, peak_memory, phase, reset_peak_memory
from vptbench.harness.features import FeatureStore, encode_dataset
from vptbench.harness.metrics import classification_metrics
from vptbench.harness.seeding import seed_everything
from vptbench.harness.trainer import Batches, EpochRecord, FitOutcome, Precision, evaluate, fit
from vptbench.models import LoadedModel
from vptbench.protocol import FeatureTuner, Task
from vptbench.registry import Experiment, Training


class Observer(Protocol):
    """What the runner reports while it works; the CLI draws progress bars from it."""

    progress: Any

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None: ...

    def epoch_done(self, record: EpochRecord) -> None: ...

    def run_done(self, record: dict) -> None: ...


class QuietObserver:
    progress = None

    def __enter__(self) -> QuietObserver:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run_started(self, experiment_id: str, seed: int, epochs: int) -> None:
        pass

    def epoch_done(self, record: EpochRecord) -> None:
        pass

    def run_done(self, record: dict) -> None:
        pass


@dataclass
class PlannedExperiment:
    """An experiment resolved against its tuner: class, validated config and training settings."""

    id: str
    spec: Experiment
    training: Training
    tuner: type | None
    config: Any
    error: str = ""  # why the tuner cannot be used; the run is recorded as failed
    traceback: str = ""  # and where, when its plugin failed to import

    def build(self, clip: nn.Module, task: Task) -> tuple[nn.Module, nn.Module]:
        """The tuner and the frozen copy of `clip` it wraps: what it unfreezes or changes touches no other run."""
        frozen = copy.deepcopy(clip).requires_grad_(False)
        return self.tuner(self.config, frozen, task), frozen


@dataclass
class Workbench:
    """What every run of a suite shares: the pristine model, decoded data, task, device, features."""

    model: LoadedModel
    data: ImageData
    task: Task
    device: torch.device
    features: FeatureStore = field(default_factory=FeatureStore)
    fingerprints: dict[str, str] = field(default_factory=dict)  # of model and data, for run.json

    def normalizer(self):
        mean = torch.tensor(self.data.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, device=self.device).view(1, -1, 1, 1)
        return lambda pixels: normalize(pixels.to(self.device), mean, std)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total), each shared tensor counted once."""
    unique = {id(p): p for p in module.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def uses_cached_features(tuner: nn.Module) -> bool:
    return isinstance(tuner, FeatureTuner)


def run_one(bench: Workbench, plan: PlannedExperiment, seed: int, observer: Observer) -> dict:
    """Everything measured for one (experiment, seed); raises only on harness bugs or bad tuners."""
    device = bench.device
    start = clock(device)
    generator = seed_everything(seed)
    tuner, clip = plan.build(bench.model.clip, bench.task)
    tuner = tuner.to(device)
    precision = Precision(plan.training.precision, device)
    pixels = bench.normalizer()
    data, transform, logits_fn, features_from = bench.data, pixels, tuner, None
    if uses_cached_features(tuner):
        with precision.autocast():
            _check_frozen_encoder(tuner, pixels(bench.data.train.pixels[:1]))
        key = tuner.feature_key() if callable(getattr(tuner, "feature_key", None)) else None
        with phase("encoding features"):
            data, features_from = bench.features.get(key, precision.name, clip, bench.data, lambda: _encode(tuner, bench.data, pixels, plan.training.eval_batch_size, precision))
        transform, logits_fn = _identity, tuner.classify
    with precision.autocast():
        _check_logits(tuner, logits_fn, transform(data.train.pixels[:2]), bench.task.num_classes)
    if plan.training.compile:
        logits_fn = torch.compile(logits_fn)
    trainable, total = count_parameters(tuner)
    splits = make_splits(data, plan.training.val_fraction, seed, selects=trainable > 0)
    train, val, test = (Batches(s.pixels.to(device), s.labels.to(device), transform) for s in (splits.train, splits.val, splits.test))
    reset_peak_memory(device)
    setup_seconds = clock(device) - start

    epochs = plan.training.epochs if trainable else 0
    observer.run_started(plan.id, seed, epochs)
    if trainable:
        with phase("training"):
            outcome = fit(tuner, logits_fn, train, val, plan.training, generator, device, observer.epoch_done)
    else:
        outcome = FitOutcome()

    start = clock(device)
    batch = plan.training.eval_batch_size
    with phase("evaluating"):
        train_eval, val_eval = (evaluate(tuner, logits_fn, split, batch, precision) for split in (train, val))
        test_eval = evaluate(tuner, logits_fn, test, batch, precision)  # the only time the test split is touched
    outcome.eval_seconds += clock(device) - start
    metrics = classification_metrics(test.labels.cpu().numpy(), test_eval.predictions.numpy(), bench.task.class_names)
    memory, memory_kind = peak_memory(device)
    return {
        "experiment": plan.id,
        "tuner": plan.spec.tuner,
        "seed": seed,
        "status": outcome.status,
        "error": outcome.error,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total if total else 0.0,
        "trainable_without_gradient": _without_gradient(tuner, outcome.without_gradient),
        "frozen_added_params": 0 if trainable else _added_params(tuner, clip),
        "train_accuracy": train_eval.accuracy,
        "val_accuracy": val_eval.accuracy,
        "val_loss": val_eval.loss,
        "test_accuracy": metrics["accuracy"],
        "test_loss": test_eval.loss,
        "test_macro_f1": metrics["macro_f1"],
        "epochs_run": outcome.diverged_epoch or len(outcome.history),  # the diverged epoch ran, with no record
        "best_epoch": outcome.best_epoch,
        "epochs_to_converge": outcome.epochs_to_converge if trainable else None,  # nothing to converge
        "stopped_early": outcome.stopped_early,
        "setup_seconds": setup_seconds,
        "train_seconds": outcome.train_seconds,
        "eval_seconds": outcome.eval_seconds,
        "seconds_to_converge": sum(r.train_seconds for r in outcome.history[: outcome.epochs_to_converge]) if trainable else None,
        "images_per_second": outcome.images_per_second(len(train)),
        "peak_memory_mb": memory,
        "memory_kind": memory_kind,
        "device": describe(device),
        "precision": precision.name,
        "batch_size": plan.training.batch_size,
        "accumulation_steps": plan.training.accumulation_steps,
        "cached_features": features_from is not None,
        "features_from": features_from,
        "split_sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "history": outcome.history_rows(),
    }


def _without_gradient(tuner: nn.Module, names: list[str]) -> dict:
    """Trainable parameters no gradient reached: counted in `trainable_params`, yet they never
    train (e.g. a text tower unfrozen under an image-only head); usually a tuner bug."""
    params = dict(tuner.named_parameters())
    return {"count": sum(params[name].numel() for name in names), "tensors": len(names), "names": names[:5]}


def _added_params(tuner: nn.Module, clip: nn.Module) -> int:
    """Parameters a tuner added to CLIP (a head, prompts). With nothing trainable, they are
    evaluated as initialised: a tuner that froze its own head by mistake, not a zero-shot method."""
    pretrained = {id(p) for p in clip.parameters()}
    return sum(p.numel() for p in tuner.parameters() if id(p) not in pretrained)


def _identity(x: Tensor) -> Tensor:
    return x


@torch.no_grad()
def _check_logits(tuner: nn.Module, logits_fn, sample: Tensor, num_classes: int) -> None:
    """A tuner's logits must be (batch, classes): an extra column would otherwise pass through
    cross-entropy and argmax unnoticed and turn every number of the run into nonsense."""
    tuner.eval()  # no dropout: the check must not draw from the run's random stream
    shape = tuple(logits_fn(sample).shape)
    if shape != (len(sample), num_classes):
        raise PluginError(f"{type(tuner).__name__} returned logits of shape {shape}, expected (batch, classes) = ({len(sample)}, {num_classes})")


def _check_frozen_encoder(tuner: nn.Module, sample: Tensor) -> None:
    """Features are encoded once and only `classify` trains: an `encode` that depends on trainable
    parameters would leave them untrained while counting them, so that run fails instead."""
    with torch.enable_grad():
        if tuner.eval().encode(sample).requires_grad:
            raise PluginError(f"{type(tuner).__name__}.encode depends on trainable parameters, but the harness encodes once and trains only classify; drop encode/classify or freeze what encode uses")


@torch.no_grad()
def _encode(tuner: nn.Module, data: ImageData, pixels, batch_size: int, precision: Precision) -> ImageData:
    """The frozen encoder's output for every image, computed once for all epochs (and runs)."""
    tuner.eval()
    with precision.autocast():
        return encode_dataset(tuner.encode, data, pixels, batch_size)
