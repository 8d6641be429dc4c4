"""The harness: seeded splits, selection on validation, convergence, divergence, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from vptbench.data import ImageData, ImageSplit, make_splits
from vptbench.harness.observer import QuietObserver
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.runner import run_one
from vptbench.harness.trainer import Batches, EpochRecord, Precision, epochs_to_converge, fit
from vptbench.harness.workbench import Workbench
from vptbench.plugins import load_tuner
from vptbench.protocol import Task
from vptbench.registry import Convergence, Experiment, Training
from vptbench.testing import tiny_clip


def _data(n_per_class: int = 20, classes: int = 3) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    pixels = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=generator, dtype=torch.uint8)
    pixels[:, 0] = (labels * 100).view(-1, 1, 1).to(torch.uint8)  # a learnable colour cue per class
    split = ImageSplit(pixels, labels)
    return ImageData(train=split, test=ImageSplit(pixels[::2], labels[::2]), validation=None, mean=[0.5] * 3, std=[0.25] * 3)


def test_validation_split_is_stratified_seeded_and_disjoint():
    data = _data()
    a, b, c = make_splits(data, 0.2, seed=0), make_splits(data, 0.2, seed=0), make_splits(data, 0.2, seed=1)
    assert torch.equal(a.val.labels, b.val.labels) and torch.equal(a.val.pixels, b.val.pixels)
    assert not torch.equal(a.val.pixels, c.val.pixels)
    assert torch.bincount(a.val.labels).tolist() == [4, 4, 4]
    assert len(a.train) + len(a.val) == len(data.train)
    train_rows = {tuple(p.flatten().tolist()) for p in a.train.pixels}
    assert not any(tuple(p.flatten().tolist()) in train_rows for p in a.val.pixels)


def _history(accuracies):
    return [EpochRecord(i + 1, 0.0, 0.0, 0.0, acc, 0.0) for i, acc in enumerate(accuracies)]


def test_batches_cover_a_seeded_shuffle_whatever_the_gather_chunk(monkeypatch):
    import vptbench.harness.trainer as trainer

    inputs, labels = torch.arange(50.0).view(25, 2), torch.arange(25)
    batches = Batches(inputs, labels, transform=lambda x: x * 10)

    def shuffled(gather_bytes: int) -> list[tuple[Tensor, Tensor]]:
        monkeypatch.setattr(trainer, "GATHER_BYTES", gather_bytes)
        return list(batches.iterate(4, torch.Generator().manual_seed(3)))

    whole, chunked = shuffled(2**20), shuffled(3 * 4 * 8)  # one gather, then gathers of 3 batches
    order = torch.randperm(25, generator=torch.Generator().manual_seed(3))
    assert [len(y) for _, y in chunked] == [4] * 6 + [1]
    for (x, y), (x2, y2), index in zip(whole, chunked, order.split(4), strict=True):
        assert torch.equal(y, index) and torch.equal(y2, index)
        assert torch.equal(x, inputs[index] * 10) and torch.equal(x2, x)
    in_order = list(batches.iterate(10))
    assert [y.tolist() for _, y in in_order] == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]
    assert torch.equal(torch.cat([x for x, _ in in_order]), inputs * 10)


def test_a_datasets_own_validation_split_is_used_as_it_is():
    data = _data()
    own = ImageData(data.train, data.test, ImageSplit(data.test.pixels[:6], data.test.labels[:6]), data.mean, data.std)
    splits = make_splits(own, 0.2, seed=0)
    assert splits.val is own.validation and splits.train is own.train and splits.test is own.test


@pytest.mark.parametrize(("name", "kind"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_the_declared_optimiser_is_built_with_its_settings(name, kind):
    from vptbench.harness.trainer import make_optimizer

    params = [nn.Parameter(torch.ones(3))]
    optimizer = make_optimizer(params, Training(optimizer=name, lr=0.05, weight_decay=0.1), torch.device("cpu"))
    (group,) = optimizer.param_groups
    assert type(optimizer) is kind and (group["lr"], group["weight_decay"]) == (0.05, 0.1)
    assert not group.get("fused") and (name != "sgd" or group["momentum"] == 0.9)
    params[0].grad = torch.zeros(3)
    optimizer.step()
    assert bool((params[0] < 1).all())  # weight decay alone shrinks the weights


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("accumulation", [1, 2])
def test_cpu_training_steps_are_bit_identical_to_the_plain_pytorch_loop(name, accumulation):
    """On CPU the harness changes no numerics: its steps give the very weights of `zero_grad`,
    `backward`, `step` with torch's own optimiser (a fused kernel would differ in the last bits)."""
    from vptbench.harness.trainer import make_optimizer, train_step

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 16, generator=generator), torch.randint(0, 4, (96,), generator=generator)
    ours, plain = nn.Linear(16, 4), nn.Linear(16, 4)
    plain.load_state_dict(ours.state_dict())
    training = Training(optimizer=name, lr=0.05, weight_decay=0.01)
    optimizer = make_optimizer(list(ours.parameters()), training, torch.device("cpu"))
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(name)
    reference = kind(plain.parameters(), lr=0.05, weight_decay=0.01) if kind else torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    for xb, yb in zip(x.split(32) * 3, y.split(32) * 3, strict=True):
        train_step(ours, xb, yb, optimizer, Precision("fp32", torch.device("cpu")), accumulation)
        reference.zero_grad()
        if accumulation == 1:
            nn.functional.cross_entropy(plain(xb), yb).backward()
        else:  # the micro-batches' mean losses, weighed by their share of the batch
            for xm, ym in zip(xb.chunk(accumulation), yb.chunk(accumulation), strict=True):
                (nn.functional.cross_entropy(plain(xm), ym) * (len(ym) / len(yb))).backward()
        reference.step()
    assert torch.equal(ours.weight, plain.weight) and torch.equal(ours.bias, plain.bias)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_cuda_optimiser_survives_a_skipped_first_step_and_a_late_parameter(name):
    """Built for CUDA (fused Adam), run here on CPU tensors, which torch's CPU kernels accept: a first
    step that fp16 loss scaling skips, then a parameter first reached at step three, must train as the
    reference optimiser does. Fused SGD failed both: garbage momentum, then a crash."""
    from vptbench.harness.trainer import make_optimizer, train_step

    class Late(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.calls = nn.Linear(4, 3), nn.Linear(4, 3), 0

        def forward(self, x):
            self.calls += 1
            return self.a(x) + (self.b(x) if self.calls > 2 else 0)

    weights = []
    for device in ("cuda", "cpu"):
        torch.manual_seed(0)
        model, generator = Late(), torch.Generator().manual_seed(1)
        optimizer = make_optimizer(list(model.parameters()), Training(optimizer=name, lr=0.05), torch.device(device))
        precision = Precision("fp16", torch.device("cpu"))  # loss scaling, as on a pre-Ampere card
        y = torch.tensor([0, 1, 2, 0])
        for x in (torch.full((4, 4), 1e36), *torch.randn(3, 4, 4, generator=generator)):  # the first overflows
            train_step(model, x, y, optimizer, precision)
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.isfinite(weights[0]).all() and torch.allclose(weights[0], weights[1], atol=1e-5)


def test_epochs_to_converge_is_first_epoch_within_tolerance_of_best():
    assert epochs_to_converge(_history([0.5, 0.80, 0.895, 0.90, 0.88]), 0.01) == 3
    assert epochs_to_converge(_history([0.5, 0.80, 0.895, 0.90, 0.88]), 0.0) == 4
    assert epochs_to_converge([], 0.01) == 0


class Scripted(nn.Module):
    """Validation accuracy follows a script: lets selection and early stopping be checked exactly."""

    def __init__(self, script):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.script, self.calls = script, 0

    def forward(self, x):
        if not self.training:  # evaluation: correct on the scripted share of samples
            accuracy = self.script[min(self.calls, len(self.script) - 1)]
            self.calls += 1
            n = len(x)
            correct = torch.arange(n) < round(accuracy * n)
            logits = torch.zeros(n, 2)
            logits[correct, 0], logits[~correct, 1] = 1.0, 1.0
            return logits + 0 * self.weight
        return torch.stack([self.weight.expand(len(x)), -self.weight.expand(len(x))], dim=1)


def _fit(module, epochs, on_epoch=lambda record: None, **convergence):
    x, y = torch.zeros(100, 1), torch.zeros(100, dtype=torch.long)
    training = Training(epochs=epochs, batch_size=50, convergence=Convergence(**convergence))
    return fit(module, module, Batches(x, y), Batches(x, y), training, torch.Generator().manual_seed(0), torch.device("cpu"), on_epoch)


def test_best_validation_epoch_is_selected_and_restored():
    module = Scripted([0.5, 0.9, 0.6, 0.7])
    after_epoch = []
    outcome = _fit(module, epochs=4, on_epoch=lambda record: after_epoch.append(module.weight.item()))
    assert [r.val_accuracy for r in outcome.history] == pytest.approx([0.5, 0.9, 0.6, 0.7])
    assert outcome.best_epoch == 2 and not outcome.stopped_early
    assert len(set(after_epoch)) == 4 and 0.0 not in after_epoch  # every epoch moved the weight
    assert module.weight.item() == after_epoch[1]  # restored to the state after epoch 2


def test_restoring_the_best_epoch_restores_its_buffers_too():
    """A plugin's batch-norm statistics belong to the weights they were measured with."""

    class Counting(Scripted):
        def __init__(self, script):
            super().__init__(script)
            self.register_buffer("steps_seen", torch.zeros(()))

        def forward(self, x):
            if self.training:
                self.steps_seen += 1
            return super().forward(x)

    module = Counting([0.5, 0.9, 0.6, 0.7])
    _fit(module, epochs=4)  # 2 steps an epoch
    assert module.steps_seen.item() == 4.0


def test_a_parameter_some_batches_use_is_not_reported_as_unreached():
    class Sometimes(Scripted):
        def __init__(self, script):
            super().__init__(script)
            self.rarely, self.never, self.steps = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(())), 0

        def forward(self, x):
            self.steps += self.training
            return super().forward(x) + (self.rarely if self.training and self.steps == 2 else 0)

    assert _fit(Sometimes([0.5]), epochs=2).without_gradient == ["never"]  # 2 steps an epoch


def test_early_stopping_uses_patience_and_min_delta():
    outcome = _fit(Scripted([0.5, 0.8, 0.805, 0.79, 0.81, 0.95]), epochs=6, patience=3, min_delta=0.02)
    assert outcome.stopped_early and len(outcome.history) == 5
    assert outcome.best_epoch == 5  # selection still takes the best accuracy seen


def test_min_delta_is_measured_from_the_last_significant_improvement():
    """A steady climb of 0.01 an evaluation gains more than min_delta every two: it is improving,
    so it runs on (Lightning's rule), where comparing with the latest best would stop it at epoch 4."""
    outcome = _fit(Scripted([0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86]), epochs=7, patience=3, min_delta=0.02)
    assert not outcome.stopped_early and len(outcome.history) == 7 and outcome.best_epoch == 7


def test_weights_broken_by_an_epochs_last_step_are_never_selected():
    """The training loss is computed before each step, so only validation sees the weights of an
    epoch's last step; NaN logits argmax to class 0, which would score well on a majority of 0s."""

    class BreaksAtLastStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear, self.steps = nn.Linear(2, 3), 0

        def forward(self, x):
            out = self.linear(x)
            if self.training:
                self.steps += 1
                if self.steps == 4:  # epoch 2's last step: a finite loss whose gradient is NaN (d sqrt at 0)
                    out = out + (self.linear.weight[0, 0] * 0).sqrt()
            return out

    torch.manual_seed(0)
    x, y = torch.randn(60, 2), torch.cat([torch.zeros(40, dtype=torch.long), torch.randint(0, 3, (20,))])
    val_y = torch.cat([torch.zeros(25, dtype=torch.long), torch.ones(5, dtype=torch.long)])
    module = BreaksAtLastStep()
    training = Training(epochs=3, batch_size=30, lr=1e-3)
    outcome = fit(module, module, Batches(x, y), Batches(torch.randn(30, 2), val_y), training, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert outcome.status == "diverged" and outcome.diverged_epoch == 2 and outcome.error == "non-finite validation loss at epoch 2"
    assert [r.epoch for r in outcome.history] == [1] and outcome.best_epoch == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())  # epoch 1's weights restored


def test_non_finite_loss_stops_the_run_as_diverged():
    class Exploding(Scripted):
        def forward(self, x):
            return super().forward(x) * float("nan") if self.training else super().forward(x)

    outcome = _fit(Exploding([0.5]), epochs=5)
    assert outcome.status == "diverged" and outcome.diverged_epoch == 1 and outcome.history == []


def test_a_diverged_run_counts_the_epoch_that_diverged_as_run():
    from vptbench.tuners.linear_probe import LinearProbe

    class ExplodingInEpoch3(LinearProbe):  # 48 training images in batches of 8: 6 steps an epoch
        steps = 0

        def classify(self, features):
            self.steps += self.training
            return super().classify(features) * (float("nan") if self.steps > 12 else 1.0)

    plan = _plan("linear-probe", epochs=5, tuner=ExplodingInEpoch3)
    record = run_one(_bench(), plan, 0, QuietObserver())
    assert record.status == "diverged" and record.error.startswith("non-finite training loss at epoch 3; non-finite logits on the train (48 of 48 images)")
    assert record.epochs_run == 3 and len(record.history) == 2
    assert record.test_accuracy is None and record.confusion_matrix is None  # its evaluations were NaN too: no accuracy from them


def _bench(data=None):
    clip, tokenizer, _ = tiny_clip()
    task = Task(["a", "b", "c"], ["a photo of a {}."], tokenizer)
    return Workbench(type("M", (), {"clip": clip})(), data or _data(), task, torch.device("cpu"))


def _plan(name, epochs=3, training=None, tuner=None, **params):
    """Experiment E of the built-in `name`, or of a test's own `tuner` class derived from it."""
    tuner = tuner or load_tuner(name)
    settings = Training(epochs=epochs, batch_size=8, **(training or {}))
    return PlannedExperiment("E", Experiment(tuner=name, params=params), settings, tuner, tuner.Config(**params))


def test_same_config_and_seed_give_identical_records():
    bench = _bench()
    for name in ("linear-probe", "vpt-deep"):
        first, second = (run_one(bench, _plan(name, num_tokens=2) if name == "vpt-deep" else _plan(name), 0, QuietObserver()) for _ in range(2))
        keys = ("test_accuracy", "val_accuracy", "train_accuracy", "confusion_matrix", "best_epoch")
        assert {k: getattr(first, k) for k in keys} == {k: getattr(second, k) for k in keys}
        assert [(h.train_loss, h.val_loss) for h in first.history] == [(h.train_loss, h.val_loss) for h in second.history]


def test_run_record_measures_what_it_claims():
    record = run_one(_bench(), _plan("linear-probe", epochs=4), 0, QuietObserver())
    assert record.status == "ok" and record.cached_features is True
    assert record.trainable_params == 32 * 3 + 3 and record.total_params > record.trainable_params
    assert record.split_sizes.model_dump() == {"train": 48, "val": 12, "test": 30}
    assert record.epochs_run == 4 and len(record.history) == 4
    assert sum(row.support for row in record.per_class) == 30
    assert sum(map(sum, record.confusion_matrix)) == 30
    steady = [row.train_seconds for row in record.history[1:]]  # the first epoch pays for warm-up
    assert record.images_per_second == pytest.approx(48 * 3 / sum(steady))
    one_epoch = run_one(_bench(), _plan("linear-probe", epochs=1), 0, QuietObserver())
    assert one_epoch.epochs_run == 1 and one_epoch.images_per_second is None  # its one epoch is mostly warm-up
    zero_shot = run_one(_bench(), _plan("zero-shot"), 0, QuietObserver())
    assert zero_shot.epochs_run == 0 and zero_shot.trainable_params == 0 and zero_shot.history == []
    assert zero_shot.epochs_to_converge is None and zero_shot.seconds_to_converge is None and zero_shot.images_per_second is None


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS resets need Linux")
def test_each_run_reports_its_own_peak_memory_on_cpu():
    import mmap

    from vptbench.harness.device import peak_memory, reset_peak_memory

    bench, cpu = _bench(), torch.device("cpu")
    reset_peak_memory(cpu)
    before, kind = peak_memory(cpu)
    ballast = mmap.mmap(-1, 2**28)  # 256 MiB made resident, then unmapped: whatever malloc keeps
    for page in range(0, 2**28, mmap.PAGESIZE):
        ballast[page] = 1
    ballast.close()
    with_ballast, _ = peak_memory(cpu)
    assert kind == "peak-rss-since-reset" and with_ballast > before + 250
    reset_peak_memory(cpu)
    assert peak_memory(cpu)[0] < with_ballast - 200
    record = run_one(bench, _plan("linear-probe", epochs=2), 0, QuietObserver())
    assert record.memory_kind == "peak-rss-since-reset" and 0 < record.peak_memory_mb < with_ballast - 200


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_frozen_features_are_computed_once_and_shared(cli, tiny_config, tmp_path):
    import json

    cache = tmp_path / "cache"
    for attempt in ("first", "second"):
        args = ("run", "--all", "--config", tiny_config, "--output", tmp_path / attempt, "--seeds", "0,1", "--quiet", "--feature-cache", cache)
        assert cli(*args)[0] == 0
    origins = {}
    for attempt in ("first", "second"):
        (run_dir,) = (tmp_path / attempt).iterdir()
        for path in sorted((run_dir / "runs").glob("*.json")):
            record = json.loads(path.read_text())
            origins[(attempt, path.stem)] = (record["features_from"], record["test_accuracy"])
    assert [origins[("first", key)][0] for key in ("E1-seed0", "E1-seed1", "E2-seed0", "E2-seed1")] == ["computed", "memory", "memory", "memory"]
    assert origins[("second", "E1-seed0")][0] == "disk"
    assert all(origins[("first", key)][1] == origins[("second", key)][1] for key in ("E1-seed0", "E2-seed1"))
    assert len(list(cache.glob("*.pt"))) == 1


def test_feature_cache_key_changes_with_everything_the_features_depend_on():
    from vptbench.harness.features import fingerprint
    from vptbench.harness.fingerprints import model_digest

    def key(name="k", precision="fp32", model=None, data=None):
        return fingerprint(name, precision, model_digest(model or tiny_clip()[0]), data or _data())

    base = key()
    assert key() == base  # the same inputs rebuilt
    changed_pixels = _data()
    changed_pixels.test.pixels[0, 0, 0, 0] ^= 1
    other_activation = tiny_clip()[0]
    other_activation.config.vision_config.hidden_act = "gelu"  # a local config.json edited: same weights, other features
    data = _data()
    variants = [
        key(model=other_activation),
        key(name="other"),
        key(precision="bf16"),
        key(model=tiny_clip(seed=1)[0]),
        key(model=tiny_clip(attn_implementation="eager")[0]),
        key(data=changed_pixels),
        key(data=ImageData(data.train, data.test, None, [0.4] * 3, data.std)),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_a_feature_tuner_that_changes_its_frozen_clip_gets_its_own_features():
    """Features are shared in memory only between tuners whose frozen models are the same."""
    from vptbench.tuners.linear_probe import LinearProbe

    class ShallowerProbe(LinearProbe):  # inherits encode, on a CLIP without its last vision layer
        def __init__(self, config, clip, task):
            clip.vision_model.encoder.layers = clip.vision_model.encoder.layers[:-1]
            super().__init__(config, clip, task)

    bench = _bench()
    first = run_one(bench, _plan("linear-probe"), 0, QuietObserver())
    shared = run_one(bench, _plan("linear-probe"), 1, QuietObserver())
    shallower = run_one(bench, _plan("linear-probe", tuner=ShallowerProbe), 0, QuietObserver())
    alone = run_one(_bench(), _plan("linear-probe", tuner=ShallowerProbe), 0, QuietObserver())
    assert (first.features_from, shared.features_from, shallower.features_from) == ("computed", "memory", "computed")
    assert shallower.test_loss == alone.test_loss != first.test_loss


def test_a_feature_tuner_that_encodes_differently_does_not_share_cached_features():
    from vptbench.tuners.heads import FrozenFeatureTuner
    from vptbench.tuners.linear_probe import LinearProbe
    from vptbench.tuners.zero_shot import ZeroShot

    class PooledPatches(FrozenFeatureTuner):
        def encode(self, pixel_values):
            return self.clip.vision_model(pixel_values=pixel_values).last_hidden_state.mean(dim=1)

    keys = {cls: cls.feature_key(object.__new__(cls)) for cls in (LinearProbe, ZeroShot, PooledPatches)}
    assert keys[LinearProbe] == keys[ZeroShot] != keys[PooledPatches]


def test_eval_every_skips_validation_but_always_checks_the_last_epoch():
    module = Scripted([0.5, 0.9, 0.6])
    x, y = torch.zeros(100, 1), torch.zeros(100, dtype=torch.long)
    training = Training(epochs=5, batch_size=50, eval_every=2)
    outcome = fit(module, module, Batches(x, y), Batches(x, y), training, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert [r.val_accuracy is not None for r in outcome.history] == [False, True, False, True, True]
    assert outcome.best_epoch == 4 and outcome.epochs_to_converge == 4


STRATEGIES = [("zero-shot", {}), ("linear-probe", {}), ("vpt-shallow", {"num_tokens": 2}), ("vpt-deep", {"num_tokens": 2}), ("dual-prompt", {"visual_tokens": 2}), ("full-finetune", {})]


@pytest.mark.slow  # over 1 s: every strategy, twice
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_every_strategy_trains_under_mixed_precision_as_in_fp32(precision):
    """CUDA's default (bf16) and fp16 with loss scaling, run through CPU autocast: the same code path."""
    bench = _bench()
    for name, params in STRATEGIES:
        plain, mixed = (run_one(bench, _plan(name, training={"precision": p}, **params), 0, QuietObserver()) for p in ("fp32", precision))
        assert mixed.status == "ok" and mixed.precision == precision, (name, mixed.error)
        assert mixed.test_accuracy == plain.test_accuracy, name
        assert [row.train_loss for row in mixed.history] == pytest.approx([row.train_loss for row in plain.history], rel=0.05), name
        assert mixed.test_loss == pytest.approx(plain.test_loss, rel=0.05), name
        assert mixed.test_loss != plain.test_loss, name  # the low precision really ran
    assert run_one(bench, _plan("linear-probe", training={"precision": precision}), 0, QuietObserver()).features_from == "memory"


@pytest.mark.slow  # torch.compile
def test_compiled_training_matches_eager():
    from torch._dynamo.utils import counters

    bench = _bench()
    eager = run_one(bench, _plan("vpt-shallow", num_tokens=2), 0, QuietObserver())
    counters.clear()
    compiled = run_one(bench, _plan("vpt-shallow", training={"compile": True}, num_tokens=2), 0, QuietObserver())
    assert compiled.status == "ok" and counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled
    assert compiled.test_accuracy == pytest.approx(eager.test_accuracy, abs=0.05)
    assert [row.train_loss for row in compiled.history] == pytest.approx([row.train_loss for row in eager.history], rel=1e-3)


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16")])
@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")  # the mocked card
def test_auto_precision_is_bf16_on_ampere_and_later_else_scaled_fp16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    precision = Precision("auto", torch.device("cuda"))
    assert precision.name == expected and (precision.scaler is not None) == (expected == "fp16")
    assert Precision("auto", torch.device("cpu")).name == "fp32"


@pytest.mark.parametrize(
    ("card", "precision", "expected"),
    [("NVIDIA H100 80GB HBM3", "bf16", 989.0), ("NVIDIA H100 PCIe", "bf16", 756.0), ("NVIDIA H100 PCIe", "fp32", 378.0), ("NVIDIA H200", "fp16", 989.0), ("Some Other GPU", "bf16", None)],
)
@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")  # the mocked card
def test_mfu_peak_follows_the_card_variant_and_the_precision(monkeypatch, card, precision, expected):
    from vptbench.harness.throughput import device_peak_tflops

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: card)
    cuda, tf32 = torch.device("cuda"), torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # as use_device sets it on CUDA
    try:
        assert device_peak_tflops(cuda, Precision(precision, cuda)) == expected
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert device_peak_tflops(torch.device("cpu"), Precision("fp32", torch.device("cpu"))) is None


def test_class_text_features_are_computed_once_per_suite(monkeypatch):
    import vptbench.tuners.heads as heads

    calls = []
    real = heads.class_text_features
    monkeypatch.setattr(heads, "class_text_features", lambda *args: (calls.append(args), real(*args))[1])
    bench = _bench()
    shared = [run_one(bench, plan, seed, QuietObserver()) for plan, seed in ((_plan("zero-shot"), 0), (_plan("zero-shot"), 1), (_plan("vpt-shallow", num_tokens=2, head="text"), 0))]
    assert len(calls) == 1  # two experiments, two seeds, one computation
    run_one(bench, _plan("zero-shot", templates=["{}"]), 0, QuietObserver())
    assert len(calls) == 2  # other templates are other features
    fresh = run_one(_bench(), _plan("zero-shot"), 0, QuietObserver())  # another suite computes its own
    assert len(calls) == 3 and fresh.test_loss == shared[0].test_loss == shared[1].test_loss


def test_a_feature_tuner_whose_encode_trains_fails_instead_of_silently_freezing_it():
    from vptbench.harness.guarded import run_guarded
    from vptbench.tuners.linear_probe import LinearProbe

    class TrainsItsEncoder(LinearProbe):
        def __init__(self, config, clip, task):
            super().__init__(config, clip, task)
            clip.visual_projection.requires_grad_(True)

    plan = _plan("linear-probe", epochs=2, tuner=TrainsItsEncoder)
    record = run_guarded(_bench(), plan, 0, QuietObserver(), retry_oom=False)
    assert record.status == "failed"
    assert record.error.startswith("TrainsItsEncoder.encode depends on trainable parameters, but the harness encodes once and trains only classify")


@pytest.mark.parametrize("bad", ["extra column", "one dimension"])
def test_logits_of_the_wrong_shape_fail_the_run_with_the_tuners_name(bad):
    from vptbench.harness.guarded import run_guarded
    from vptbench.tuners.vpt import VptShallow

    class WrongShape(VptShallow):
        def forward(self, pixel_values):
            logits = super().forward(pixel_values)
            return torch.cat([logits, logits[:, :1] + 100], dim=1) if bad == "extra column" else logits[:, 0]

    plan = _plan("vpt-shallow", epochs=1, tuner=WrongShape, num_tokens=2)
    record = run_guarded(_bench(), plan, 0, QuietObserver(), retry_oom=False)
    expected = "(2, 4)" if bad == "extra column" else "(2,)"
    assert record.status == "failed" and record.error == f"WrongShape returned logits of shape {expected}, expected (batch, classes) = (2, 3)"


def test_macro_f1_leaves_out_a_class_the_test_split_lacks_and_nobody_predicts():
    from vptbench.harness.metrics import classification_metrics

    metrics = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b", "absent"])
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # F1 of a and b; "absent" has none
    assert metrics["per_class"][2] == {"class": "absent", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_trainable_parameters_no_gradient_reaches_are_named():
    """Counted as trainable but never trained: usually a tuner that unfroze more than it uses."""
    from vptbench.tuners.linear_probe import LinearProbe

    class UnfreezesTheTextTower(LinearProbe):
        def __init__(self, config, clip, task):
            super().__init__(config, clip, task)
            clip.text_model.requires_grad_(True)  # the image features never use it

    plan = _plan("linear-probe", epochs=1, tuner=UnfreezesTheTextTower)
    record = run_one(_bench(), plan, 0, QuietObserver())
    text_params = sum(p.numel() for p in _bench().model.clip.text_model.parameters())
    assert record.trainable_without_gradient.count == text_params
    assert record.trainable_params == text_params + 32 * 3 + 3
    assert record.trainable_without_gradient.names[0].startswith("clip.text_model.")


def test_a_tuner_that_freezes_its_own_head_is_flagged_and_zero_shot_is_not():
    from vptbench.reporting.markdown import untrained_note
    from vptbench.tuners.linear_probe import LinearProbe

    class FrozenHead(LinearProbe):
        def __init__(self, config, clip, task):
            super().__init__(config, clip, task)
            self.head.requires_grad_(False)

    plan = _plan("linear-probe", epochs=1, tuner=FrozenHead)
    frozen = run_one(_bench(), plan, 0, QuietObserver())
    assert frozen.frozen_added_params == 32 * 3 + 3 and frozen.epochs_run == 0
    assert untrained_note(frozen) == "nothing is trainable, yet the tuner added 99 parameters of its own: they were evaluated as initialised"
    zero_shot = run_one(_bench(), _plan("zero-shot"), 0, QuietObserver())
    assert zero_shot.frozen_added_params == 0 and untrained_note(zero_shot) == ""


@pytest.mark.slow  # over 1 s: builds ViT-B/16 twice
def test_the_builtin_random_model_has_the_same_weights_every_time():
    """A resumed run, or a combined report, of the random ViT-B/16 goes on with the weights it began with."""
    from vptbench.harness.fingerprints import model_digest
    from vptbench.models import load_model
    from vptbench.registry import ModelSpec

    spec = ModelSpec(source="builtin", id="vit-b16-random")
    torch.manual_seed(1)
    first = model_digest(load_model("r", spec).clip)
    state = torch.random.get_rng_state()
    assert model_digest(load_model("r", spec).clip) == first
    assert torch.equal(torch.random.get_rng_state(), state)  # and the caller's random stream is untouched
