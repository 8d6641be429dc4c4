"""Run one (experiment, seed): build the tuner, train on train, select on val, test once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from vptbench import contract
from vptbench.data import ImageData, make_splits
from vptbench.harness.augment import crop_and_flip
from vptbench.harness.counting import count_parameters
from vptbench.harness.device import clock, describe, peak_memory, phase, reset_peak_memory
from vptbench.harness.features import encode_dataset
from vptbench.harness.metrics import classification_metrics
from vptbench.harness.observer import Observer
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.seeding import seed_everything
from vptbench.harness.trainer import Batches, EpochRecord, FitOutcome, Precision, evaluate, fit
from vptbench.harness.workbench import Workbench
from vptbench.results.records import RunRecord, Status

if TYPE_CHECKING:
    from vptbench.protocol import FeatureTuner


def run_one(bench: Workbench, plan: PlannedExperiment, seed: int, observer: Observer) -> RunRecord:
    """Everything measured for one (experiment, seed); raises only on harness bugs or bad tuners."""
    device = bench.device
    start = clock(device)
    generator = seed_everything(seed)
    tuner, clip = plan.build(bench.model.clip, bench.task)
    tuner = tuner.to(device)
    precision = Precision(plan.training.precision, device)
    pixels = bench.normalizer()
    data, transform, features_from = bench.data, pixels, None
    encode_seconds: float | None = None  # no cached features
    logits_fn: Callable[[Tensor], Tensor] = tuner
    if contract.caches_features(tuner) and not plan.training.augment:  # augmented images change every epoch: nothing to cache
        with precision.autocast():
            contract.check_frozen_encoder(tuner, pixels(bench.data.train.pixels[:1]))
        key = contract.feature_key(tuner, plan.config, clip)
        encoded: list[float] = []  # the encoding's seconds, when this run computes the features

        def compute() -> ImageData:
            begin = clock(device)
            features = _encode(tuner, bench.data, pixels, plan.training.eval_batch_size, precision)
            encoded.append(clock(device) - begin)
            return features

        with phase("encoding features"):
            data, features_from = bench.features.get(key, precision.name, clip, bench.data, compute)
        encode_seconds = float(sum(encoded))  # 0: from memory or disk, an earlier run's encoding
        transform, logits_fn = _identity, cast("FeatureTuner", tuner).classify
    with precision.autocast():
        contract.check_logits(tuner, logits_fn, transform(data.train.pixels[:2]), bench.task.num_classes)
    if plan.training.compile:
        logits_fn = torch.compile(logits_fn)
    trainable, total = count_parameters(tuner)
    splits = make_splits(data, plan.training.val_fraction, seed, selects=trainable > 0)
    train, val = (Batches(s.pixels.to(device), s.labels.to(device), transform) for s in (splits.train, splits.val))
    reset_peak_memory(device)
    setup_seconds = clock(device) - start

    epochs = plan.training.epochs if trainable else 0
    trial = plan.trial
    observer.run_started(plan.id if trial is None else f"{plan.id} trial {trial.number}", seed, epochs)
    on_epoch = observer.epoch_done if trial is None or trial.pruning is None else _pruned_by(trial.pruning.stopper(), observer)
    if trainable:
        with phase("training"):
            outcome = fit(tuner, logits_fn, _augmented(train, generator) if plan.training.augment else train, val, plan.training, generator, device, on_epoch)
    else:
        outcome = FitOutcome()

    if trial is not None:  # scored on validation: the test split is never moved, let alone evaluated
        return _trial_record(plan, seed, outcome, trainable, total)
    test = Batches(splits.test.pixels.to(device), splits.test.labels.to(device), transform)
    start = clock(device)
    batch = plan.training.eval_batch_size
    with phase("evaluating"):
        train_eval, val_eval = (evaluate(tuner, logits_fn, split, batch, precision) for split in (train, val))
    refit = None
    if plan.training.refit and trainable and outcome.status == "ok":  # VPT's protocol: the test is of a refit on train + validation
        outcome.eval_seconds, selected_memory = outcome.eval_seconds + clock(device) - start, peak_memory(device)
        del tuner, clip, logits_fn  # the selected state is measured; the refit starts afresh
        tuner, clip, logits_fn, refit = _refit(bench, plan, seed, train, val, outcome.best_epoch, features_from is not None)
        if refit.status != "ok":
            outcome.status, outcome.error = refit.status, f"refit on train + validation: {refit.error}"
        start = clock(device)
    with phase("evaluating"):
        test_eval = evaluate(tuner, logits_fn, test, batch, precision)  # the only time the test split is touched
    outcome.eval_seconds += clock(device) - start
    memory, memory_kind = selected_memory if refit else peak_memory(device)  # a refit's peak would count its data twice
    evaluated = {"train": (train_eval, train), "validation": (val_eval, val), "test": (test_eval, test)}
    if broken := [f"{name} ({e.nonfinite} of {len(split)} images)" for name, (e, split) in evaluated.items() if e.nonfinite]:
        # an argmax of NaN is no prediction: nothing is measured on the selected state
        status, error = (Status.diverged if trainable else Status.failed), "; ".join(filter(None, [outcome.error, f"non-finite logits on the {', '.join(broken)} split of the selected state"]))
        measured: dict = {}
    else:
        status, error = Status(outcome.status), outcome.error
        metrics = classification_metrics(test.labels.cpu().numpy(), test_eval.predictions.numpy(), bench.task.class_names)
        measured = {
            "train_accuracy": train_eval.accuracy, "val_accuracy": val_eval.accuracy, "val_loss": val_eval.loss,
            "test_accuracy": metrics["accuracy"], "test_loss": test_eval.loss, "test_macro_f1": metrics["macro_f1"],
            "per_class": metrics["per_class"], "confusion_matrix": metrics["confusion_matrix"],
            "test_predictions": test_eval.predictions.tolist(), "test_labels": test.labels.cpu().tolist(),  # per image: reporting.significance
        }  # fmt: skip
    return RunRecord(
        experiment=plan.id,
        tuner=plan.spec.tuner,
        seed=seed,
        status=status,
        error=error,
        trainable_params=trainable,
        total_params=total,
        trainable_percent=100.0 * trainable / total if total else 0.0,
        trainable_without_gradient=_without_gradient(tuner, outcome.without_gradient),
        frozen_added_params=0 if trainable else _added_params(tuner, clip),
        epochs_run=outcome.diverged_epoch or len(outcome.history),  # the diverged epoch ran, with no record
        best_epoch=outcome.best_epoch,
        epochs_to_converge=outcome.epochs_to_converge if trainable else None,  # nothing to converge
        stopped_early=outcome.stopped_early,
        setup_seconds=setup_seconds,
        train_seconds=outcome.train_seconds,
        eval_seconds=outcome.eval_seconds,
        encode_seconds=encode_seconds,
        seconds_to_converge=sum(r.train_seconds for r in outcome.history[: outcome.epochs_to_converge]) if trainable else None,
        images_per_second=outcome.images_per_second(len(train)),
        peak_memory_mb=memory,
        memory_kind=memory_kind,
        device=describe(device),
        precision=precision.name,
        batch_size=plan.training.batch_size,
        accumulation_steps=plan.training.accumulation_steps,
        refit_epochs=outcome.best_epoch if refit else None,
        refit_seconds=refit.train_seconds if refit else None,
        cached_features=features_from is not None,
        features_from=features_from,
        split_sizes={"train": len(train), "val": len(val), "test": len(test)},
        history=outcome.history_rows(),
        params=plan.params(),
        reference=plan.reference(),
        **measured,
    )


def _pruned_by(stopper: Callable[[EpochRecord], bool], observer: Observer) -> Callable[[EpochRecord], bool]:
    def on_epoch(record: EpochRecord) -> bool:
        observer.epoch_done(record)
        return stopper(record)

    return on_epoch


def _trial_record(plan: PlannedExperiment, seed: int, outcome: FitOutcome, trainable: int, total: int) -> RunRecord:
    """A trial's record: its curves and its selected epoch's validation accuracy, nothing tested."""
    assert plan.trial is not None
    evaluated = [row.val_accuracy for row in outcome.history if row.val_accuracy is not None]
    return RunRecord(
        experiment=plan.id,
        tuner=plan.spec.tuner,
        seed=seed,
        trial=plan.trial.number,
        trial_values=plan.trial.values,
        status=Status(outcome.status),
        error=outcome.error,
        trainable_params=trainable,
        total_params=total,
        trainable_percent=100.0 * trainable / total if total else 0.0,
        val_accuracy=max(evaluated) if evaluated else None,
        epochs_run=outcome.diverged_epoch or len(outcome.history),
        best_epoch=outcome.best_epoch,
        epochs_to_converge=outcome.epochs_to_converge,
        train_seconds=outcome.train_seconds,
        eval_seconds=outcome.eval_seconds,
        batch_size=plan.training.batch_size,
        history=outcome.history_rows(),
        params=plan.params(),
    )


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


def _refit(
    bench: Workbench, plan: PlannedExperiment, seed: int, train: Batches, val: Batches, epochs: int, cached: bool
) -> tuple[nn.Module, nn.Module, Callable[[Tensor], Tensor], FitOutcome]:
    """A fresh tuner, built and seeded as the selection run's, trained on train + validation for
    the selected `epochs` of the same schedule, with no validation: VPT's protocol. Returns the
    tuner, its frozen CLIP, its logits function and the refit's outcome."""
    generator = seed_everything(seed)
    tuner, clip = plan.build(bench.model.clip, bench.task)
    tuner = tuner.to(bench.device)
    logits_fn: Callable[[Tensor], Tensor] = cast("FeatureTuner", tuner).classify if cached else tuner
    if plan.training.compile:
        logits_fn = torch.compile(logits_fn)
    both = Batches(torch.cat([train.inputs, val.inputs]), torch.cat([train.labels, val.labels]), train.transform)
    with phase("training"):
        outcome = fit(tuner, logits_fn, _augmented(both, generator) if plan.training.augment else both, None, plan.training, generator, bench.device, epochs=epochs)
    return tuner, clip, logits_fn, outcome


def _augmented(batches: Batches, generator: torch.Generator) -> Batches:
    """Training batches cropped and flipped at random (drawn from the run's `generator`) as raw
    pixels on the device, before the split's own transform normalises them."""
    return Batches(batches.inputs, batches.labels, lambda x: batches.transform(crop_and_flip(x, generator)))


def _identity(x: Tensor) -> Tensor:
    return x


@torch.no_grad()
def _encode(tuner: nn.Module, data: ImageData, pixels, batch_size: int, precision: Precision) -> ImageData:
    """The frozen encoder's output for every image, computed once for all epochs (and runs)."""
    tuner.eval()
    with precision.autocast():
        return encode_dataset(cast("FeatureTuner", tuner).encode, data, pixels, batch_size)
