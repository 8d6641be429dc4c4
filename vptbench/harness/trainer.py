"""The one training loop every strategy shares: select on validation, never look at test."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from vptbench.harness.device import clock, phase
from vptbench.harness.schedules import make_scheduler, steps_per_epoch
from vptbench.registry import Training

GATHER_BYTES = 64 * 2**20


@dataclass
class Batches:
    """A split as the model consumes it: stored inputs, labels, and a per-batch transform."""

    inputs: Tensor
    labels: Tensor
    transform: Callable[[Tensor], Tensor] = lambda x: x

    def __len__(self) -> int:
        return len(self.labels)

    def iterate(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches in stored order, or shuffled by `generator`.

        Shuffled rows are gathered a chunk of batches at a time (at most GATHER_BYTES): one indexing op
        per chunk instead of two per step, which on a small head is a tenth of the step. In order,
        batches are views of the store, with no copy at all.
        """
        if generator is None:
            yield from zip(map(self.transform, self.inputs.split(batch_size)), self.labels.split(batch_size), strict=True)
            return
        order = torch.randperm(len(self), generator=generator).to(self.labels.device)
        row_bytes = max(1, self.inputs[:1].nbytes)
        rows = max(1, GATHER_BYTES // row_bytes // batch_size) * batch_size
        for chunk in order.split(rows):
            inputs, labels = self.inputs[chunk], self.labels[chunk]
            yield from zip(map(self.transform, inputs.split(batch_size)), labels.split(batch_size), strict=True)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None  # None on epochs that `eval_every` skips
    val_accuracy: float | None
    train_seconds: float


@dataclass
class FitOutcome:
    status: str = "ok"  # ok | diverged | pruned
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    epochs_to_converge: int = 0
    stopped_early: bool = False
    diverged_epoch: int | None = None
    error: str = ""  # what diverged: the training loss, or the validation loss of the epoch's last weights
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    without_gradient: list[str] = field(default_factory=list)  # trainable parameters no step of the first epoch reached

    def history_rows(self) -> list[dict]:
        return [asdict(record) for record in self.history]

    def images_per_second(self, epoch_images: int) -> float | None:
        """Training throughput after the first epoch, which also pays for warm-up (compilation,
        kernel selection, allocator growth): None for a one-epoch run, whose figure would mostly
        measure that."""
        steady = self.history[1:]
        seconds = sum(record.train_seconds for record in steady)
        return epoch_images * len(steady) / seconds if seconds else None


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    predictions: Tensor
    nonfinite: int = 0  # images whose logits hold NaN or infinity: their accuracy means nothing


class Precision:
    """Mixed precision where it is safe and fast (CUDA: bf16, or fp16 with loss scaling on cards
    older than Ampere, which only emulate bf16), the plain fp32 path everywhere else."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name == "auto":
            name = "fp32" if device.type != "cuda" else "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
        self.name = name
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()


@torch.no_grad()
def evaluate(
    module: nn.Module, logits_fn: Callable[[Tensor], Tensor], batches: Batches, batch_size: int, precision: Precision | None = None
) -> Evaluation:
    module.eval()
    device = batches.labels.device
    total_loss, nonfinite, predictions = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long), []
    with precision.autocast() if precision else contextlib.nullcontext():
        for x, y in batches.iterate(batch_size):
            logits = logits_fn(x).float()
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum")
            nonfinite += (~torch.isfinite(logits)).any(dim=-1).sum()
            predictions.append(logits.argmax(dim=-1))
    predicted = torch.cat(predictions).cpu()
    accuracy = (predicted == batches.labels.cpu()).float().mean().item()
    return Evaluation(total_loss.item() / len(batches), accuracy, predicted, int(nonfinite.item()))


def make_optimizer(params: list[nn.Parameter], training: Training, device: torch.device) -> torch.optim.Optimizer:
    """The harness's optimiser: fused Adam on CUDA; elsewhere, and for SGD everywhere, torch's choice
    of kernel, named outright on CPU (left to choose, Adam checks every tensor again each step).

    Fused SGD is left out: it allocates momentum uninitialised, so a first step that loss scaling
    skips leaves garbage momentum, and it fails on a parameter first reached after step one."""
    cpu: dict[str, Any] = {"foreach": False} if device.type == "cpu" else {}
    adam: dict[str, Any] = {"fused": True} if device.type == "cuda" else cpu
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay, **adam)
    if training.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=training.lr, weight_decay=training.weight_decay, **adam)
    return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay, **cpu)


def train_step(
    logits_fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer,
    precision: Precision, accumulation: int = 1, label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One optimiser step over the batch, in `accumulation` micro-batches whose gradients add up to
    the whole batch's; returns loss (label-smoothed if asked) and logits without synchronising the device.

    A whole batch takes no extra ops, and gradients are unset directly rather than through
    `zero_grad` (its profiler hooks): on a small head, each costs a measurable share of the step.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None
    if accumulation == 1:
        loss, logits = _backward(logits_fn, x, y, precision, label_smoothing=label_smoothing)
    else:
        parts = [
            _backward(logits_fn, x_part, y_part, precision, len(y_part) / len(y), label_smoothing)
            for x_part, y_part in zip(x.chunk(accumulation), y.chunk(accumulation), strict=True)
        ]
        loss, logits = torch.stack([part[0] for part in parts]).sum(), torch.cat([part[1] for part in parts])
    precision.step(optimizer)
    return loss, logits


def _backward(
    logits_fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, precision: Precision, share: float | None = None, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Loss and gradients of one (micro-)batch; `share` weighs a micro-batch's mean loss by its size."""
    with precision.autocast():
        logits = logits_fn(x).float()
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if share is not None:
        loss = loss * share
    precision.backward(loss)
    return loss.detach(), logits.detach()


def fit(
    module: nn.Module,
    logits_fn: Callable[[Tensor], Tensor],
    train: Batches,
    val: Batches | None,
    training: Training,
    generator: torch.Generator,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], bool | None] = lambda record: None,
    epochs: int | None = None,
) -> FitOutcome:
    """Train the module's trainable parameters; leave it in its best-validation state. `on_epoch`
    sees each epoch's record; returning True stops training there (a search prunes a trial so).
    Without `val` (a refit on train + validation) nothing is selected: the module keeps its last
    state. `epochs` stops after that many epochs of the `training.epochs` schedule.

    Losses and predictions stay on the device and are reduced once per epoch, so a GPU is never
    stalled by a per-step synchronisation and a small head pays one extra op per step, not six;
    a non-finite loss is caught at the epoch's end.
    """
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    optimizer = make_optimizer([p for _, p in named], training, device)
    scheduler = make_scheduler(optimizer, training, steps_per_epoch(len(train), training.batch_size))
    precision = Precision(training.precision, device)
    convergence = training.convergence
    outcome = FitOutcome()
    best_accuracy, best_state, since_best = -math.inf, _snapshot(module), 0
    reference = -math.inf  # the last improvement by more than min_delta, as Lightning's best_score
    unreached = dict(named)
    for epoch in range(1, (epochs or training.epochs) + 1):
        start = clock(device)
        module.train()
        losses, predicted, labels = [], [], []
        for x, y in train.iterate(training.batch_size, generator):
            loss, logits = train_step(logits_fn, x, y, optimizer, precision, training.accumulation_steps, training.label_smoothing)
            if scheduler is not None:
                scheduler.step()
            if epoch == 1:  # counted as trainable, yet no batch reaches them (each step unsets gradients first)
                unreached = {name: p for name, p in unreached.items() if p.grad is None}
            losses.append(loss)
            predicted.append(logits.argmax(dim=-1))
            labels.append(y)
        sizes = torch.full((len(labels),), float(training.batch_size), device=device)
        sizes[-1] = len(labels[-1])  # only the last batch may be short; no host-to-device copy
        loss_sum = (torch.stack(losses) * sizes).sum()
        correct = (torch.cat(predicted) == torch.cat(labels)).sum()
        seen = sum(len(y) for y in labels)
        train_seconds = clock(device) - start
        outcome.train_seconds += train_seconds
        if not torch.isfinite(loss_sum):
            outcome.status, outcome.diverged_epoch, outcome.error = "diverged", epoch, f"non-finite training loss at epoch {epoch}"
            break
        result = None
        if val is not None and (epoch % training.eval_every == 0 or epoch == training.epochs):
            start = clock(device)
            with phase("evaluating"):
                result = evaluate(module, logits_fn, val, training.eval_batch_size, precision)
            outcome.eval_seconds += clock(device) - start
            if not math.isfinite(result.loss):  # the epoch's last steps broke the weights: never select them
                outcome.status, outcome.diverged_epoch, outcome.error = "diverged", epoch, f"non-finite validation loss at epoch {epoch}"
                break
        val_loss, val_accuracy = (result.loss, result.accuracy) if result else (None, None)
        record = EpochRecord(epoch, loss_sum.item() / seen, correct.item() / seen, val_loss, val_accuracy, train_seconds)
        outcome.history.append(record)
        if on_epoch(record):
            outcome.status = "pruned"
        if result is None:
            if outcome.status == "pruned":
                break
            continue
        if result.accuracy > best_accuracy:
            best_state, outcome.best_epoch = _snapshot(module), epoch
        best_accuracy = max(best_accuracy, result.accuracy)
        if result.accuracy > reference + convergence.min_delta:
            reference, since_best = result.accuracy, 0
        else:
            since_best += 1  # counted in evaluations, as Lightning's patience is
        if outcome.status == "pruned":
            break
        if convergence.patience and since_best >= convergence.patience:
            outcome.stopped_early = True
            break
    if val is not None:
        _restore(module, best_state)
    elif outcome.status == "ok":
        outcome.best_epoch = len(outcome.history)  # the last state is the one kept
    outcome.without_gradient = list(unreached)
    outcome.epochs_to_converge = epochs_to_converge(outcome.history, convergence.tolerance)
    return outcome


def epochs_to_converge(history: list[EpochRecord], tolerance: float) -> int:
    """The first evaluated epoch whose validation accuracy is within `tolerance` of the best one."""
    evaluated = [(record.epoch, record.val_accuracy) for record in history if record.val_accuracy is not None]
    if not evaluated:
        return 0
    best = max(accuracy for _, accuracy in evaluated)
    return next(epoch for epoch, accuracy in evaluated if accuracy >= best - tolerance)


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    """What training changes: the trainable parameters and the persistent buffers (a plugin's
    batch-norm statistics go with the weights they were measured for; non-persistent ones, such as
    position ids, are constants). Kept in host memory: a device copy would add a model's worth to
    the strategy's measured peak (a quarter more for full fine-tuning with Adam)."""
    state = {name: p.detach().to("cpu", copy=True) for name, p in module.named_parameters() if p.requires_grad}
    params = {id(p) for p in module.parameters()}
    persistent = {name: b for name, b in module.state_dict(keep_vars=True).items() if id(b) not in params}
    return state | {name: b.detach().to("cpu", copy=True) for name, b in persistent.items()}


@torch.no_grad()
def _restore(module: nn.Module, state: dict[str, Tensor]) -> None:
    tensors = module.state_dict(keep_vars=True)
    for name, value in state.items():
        tensors[name].copy_(value)
