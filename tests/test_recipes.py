"""The field's training recipes as harness settings: momentum, lr schedules with warm-up, label
smoothing, on-device augmentation and VPT's refit on train + validation."""

from __future__ import annotations

import math

import pytest
import torch
from test_registry import VALID
from torch import nn

from vptbench.data import ImageData, ImageSplit
from vptbench.errors import ConfigError
from vptbench.harness import runner, trainer
from vptbench.harness.augment import crop_and_flip
from vptbench.harness.observer import QuietObserver
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.runner import run_one
from vptbench.harness.schedules import lr_factor, make_scheduler
from vptbench.harness.trainer import Batches, Precision, evaluate, fit, make_optimizer, train_step
from vptbench.harness.workbench import Workbench
from vptbench.plugins import load_tuner
from vptbench.protocol import Task
from vptbench.registry import Experiment, Training, load_registry
from vptbench.testing import tiny_clip

CPU = torch.device("cpu")


# --- schedules ---------------------------------------------------------------------------------


def test_warmup_rises_linearly_per_step_then_cosine_decays_to_zero():
    factor = lr_factor(Training(epochs=10, warmup_epochs=2, schedule="cosine"), steps_per_epoch=5)
    assert [factor(step) for step in range(10)] == pytest.approx([(k + 1) / 10 for k in range(10)])  # lr/steps .. lr
    assert factor(10) == 1.0  # warm-up done: cosine starts at lr
    assert factor(30) == pytest.approx(0.5)  # halfway through the 40 steps after warm-up
    assert factor(49) == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert 0 < factor(49) < 0.002 and factor(50) == pytest.approx(0.0)


def test_step_schedule_multiplies_by_gamma_every_step_epochs():
    factor = lr_factor(Training(epochs=9, schedule="step", step_epochs=3, step_gamma=0.5), steps_per_epoch=4)
    assert [factor(step) for step in (0, 11, 12, 23, 24, 35)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    warm = lr_factor(Training(epochs=9, schedule="step", step_epochs=3, warmup_epochs=1), steps_per_epoch=4)
    assert [warm(step) for step in (0, 3, 4, 12)] == pytest.approx([0.25, 1, 1, 0.1])  # epochs counted from the start


def test_a_constant_lr_without_warmup_has_no_scheduler_at_all():
    optimizer = torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1)
    assert make_scheduler(optimizer, Training(), 7) is None
    assert make_scheduler(optimizer, Training(warmup_epochs=1), 7) is not None


def test_fit_steps_the_schedule_once_per_optimiser_step(monkeypatch):
    seen = []

    def recording(logits_fn, x, y, optimizer, *args):
        seen.append(optimizer.param_groups[0]["lr"])
        return real(logits_fn, x, y, optimizer, *args)

    real = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", recording)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 4, generator=generator), torch.randint(0, 3, (20,), generator=generator)
    training = Training(optimizer="sgd", lr=0.1, epochs=4, batch_size=5, warmup_epochs=1, schedule="cosine")
    fit(nn.Linear(4, 3), nn.Linear(4, 3), Batches(x, y), Batches(x, y), training, generator, CPU)
    factor = lr_factor(training, steps_per_epoch=4)
    assert seen == pytest.approx([0.1 * factor(step) for step in range(16)])
    assert seen[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


# --- momentum -----------------------------------------------------------------------------------


def test_sgd_momentum_reaches_the_optimiser():
    optimizer = make_optimizer([nn.Parameter(torch.ones(3))], Training(optimizer="sgd", momentum=0.5), CPU)
    assert optimizer.param_groups[0]["momentum"] == 0.5
    assert make_optimizer([nn.Parameter(torch.ones(3))], Training(optimizer="sgd"), CPU).param_groups[0]["momentum"] == 0.9


REGISTRY = VALID  # the registry tests' minimal valid registry: one suite `demo`, lr on its own line


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ('optimizer = "adam"\nmomentum = 0.5', "suites.demo.training: momentum applies to sgd only, not adam"),
        ('optimizer = "adamw"\nmomentum = 0.0', "suites.demo.training: momentum applies to sgd only, not adamw"),
        ("momentum = 1.0", "suites.demo.training.momentum: Input should be less than 1"),
        ('schedule = "step"', "suites.demo.training: schedule 'step' needs step_epochs"),
        ('schedule = "cosine"\nstep_epochs = 3', "suites.demo.training: step_epochs applies to schedule 'step' only, not 'cosine'"),
        ("epochs = 3\nwarmup_epochs = 3", "suites.demo.training: warmup_epochs (3) must be fewer than epochs (3)"),
        ("label_smoothing = 1.0", "suites.demo.training.label_smoothing: Input should be less than 1"),
        ('augment = "yes"', 'suites.demo.training.augment: Input should be a valid boolean (got "yes")'),
    ],
)
def test_inconsistent_recipes_are_one_line_naming_the_key(tmp_path, settings, expected):
    path = tmp_path / "bench.toml"
    path.write_text(REGISTRY.replace("lr = 0.001", f"lr = 0.001\n{settings}"))
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    message = str(info.value)
    assert message == f"{path}: {expected}"


def test_an_experiment_may_override_momentum_alone_and_sgd_recipes_load(tmp_path):
    path = tmp_path / "bench.toml"
    text = REGISTRY.replace("lr = 0.001", 'lr = 0.001\noptimizer = "sgd"\nschedule = "cosine"\nwarmup_epochs = 1')
    path.write_text(text + 'training = { momentum = 0.8, label_smoothing = 0.1, augment = true, refit = true }\n')
    registry, _ = load_registry(path)
    training = registry.suites["demo"].training_for("E1")
    assert (training.optimizer, training.momentum, training.schedule, training.warmup_epochs) == ("sgd", 0.8, "cosine", 1)
    assert training.label_smoothing == 0.1 and training.augment and training.refit


# --- label smoothing ----------------------------------------------------------------------------


def test_label_smoothing_changes_the_training_loss_only():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 4, generator=generator), torch.randint(0, 3, (24,), generator=generator)
    plain, smoothed = nn.Linear(4, 3), nn.Linear(4, 3)
    smoothed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        initial = plain(x)
    fp32 = Precision("fp32", CPU)
    losses = [
        train_step(module, x, y, torch.optim.SGD(module.parameters(), lr=0.1), fp32, label_smoothing=smoothing)[0].item()
        for module, smoothing in ((plain, 0.0), (smoothed, 0.3))
    ]  # each loss is of the same (initial) weights, before its step
    assert losses == [nn.functional.cross_entropy(initial, y).item(), nn.functional.cross_entropy(initial, y, label_smoothing=0.3).item()]
    assert losses[1] != pytest.approx(losses[0])
    assert not torch.equal(plain.weight, smoothed.weight)  # and the smoothed loss trains otherwise

    module = nn.Linear(4, 3)
    val_x, val_y = torch.randn(12, 4, generator=generator), torch.randint(0, 3, (12,), generator=generator)
    outcome = fit(module, module, Batches(x, y), Batches(val_x, val_y), Training(epochs=1, batch_size=8, label_smoothing=0.3), generator, CPU)
    with torch.no_grad():
        logits = module(val_x)
    plain_val = nn.functional.cross_entropy(logits, val_y).item()
    assert outcome.history[0].val_loss == pytest.approx(plain_val)  # the same weights' validation loss, unsmoothed
    assert nn.functional.cross_entropy(logits, val_y, label_smoothing=0.3).item() != pytest.approx(plain_val)
    assert evaluate(module, module, Batches(val_x, val_y), 5).loss == pytest.approx(plain_val)


# --- augmentation -------------------------------------------------------------------------------


def _images(n=16, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_augmentation_is_reproducible_by_seed_and_keeps_shape_and_dtype():
    images = _images()
    first, again = (crop_and_flip(images, torch.Generator().manual_seed(7)) for _ in range(2))
    other = crop_and_flip(images, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == images.shape and first.dtype == torch.uint8 and first.device == images.device
    floats = crop_and_flip(images.float() / 255, torch.Generator().manual_seed(7))
    assert floats.dtype == torch.float32 and floats.shape == images.shape
    assert (floats * 255 - first.float()).abs().max() <= 0.5 + 1e-3  # the same crops, unrounded
    rectangular = torch.zeros(4, 1, 20, 48, dtype=torch.uint8)
    assert crop_and_flip(rectangular, torch.Generator().manual_seed(0)).shape == (4, 1, 20, 48)


def test_every_image_is_cropped_and_flipped_on_its_own():
    images = _images()
    out = crop_and_flip(images, torch.Generator().manual_seed(0))
    assert all(not torch.equal(a, b) for a, b in zip(out, images, strict=True))
    assert out.float().std() < images.float().std()  # upscaled crops are smoother than the noise they came from
    # the whole image (scale 1, square): each output is the image or its mirror, exactly, and both occur
    whole = crop_and_flip(images, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flipped = [torch.equal(a, b.flip(-1)) for a, b in zip(whole, images, strict=True)]
    kept = [torch.equal(a, b) for a, b in zip(whole, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    # a quarter of the area: a 16 x 16 window scaled back to 32 x 32, its colours within the image's
    half = torch.zeros(8, 1, 32, 32, dtype=torch.uint8)
    half[..., 16:] = 200  # left half 0, right half 200: a window shows 0, 200 or the edge between
    crops = crop_and_flip(half, torch.Generator().manual_seed(1), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    assert int(crops.min()) >= 0 and int(crops.max()) <= 200
    assert any(not torch.equal(c, half[0]) for c in crops)


# --- runs ---------------------------------------------------------------------------------------


def _data(n_per_class: int = 20, classes: int = 3) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    pixels = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=generator, dtype=torch.uint8)
    pixels[:, 0] = (labels * 100).view(-1, 1, 1).to(torch.uint8)
    return ImageData(train=ImageSplit(pixels, labels), test=ImageSplit(pixels[::2], labels[::2]), validation=None, mean=[0.5] * 3, std=[0.25] * 3)


def _bench() -> Workbench:
    clip, tokenizer, _ = tiny_clip()
    return Workbench(type("M", (), {"clip": clip})(), _data(), Task(["a", "b", "c"], ["a photo of a {}."], tokenizer), CPU)


def _plan(name: str, epochs: int = 3, **training) -> PlannedExperiment:
    tuner = load_tuner(name)
    return PlannedExperiment("E", Experiment(tuner=name), Training(epochs=epochs, batch_size=8, **training), tuner, tuner.Config())


def _recording_fit(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    real = runner.fit

    def recording(module, logits_fn, train, val, *args, **kwargs):
        calls.append({"images": len(train), "validated": val is not None, "epochs": kwargs.get("epochs"), "module": module})
        return real(module, logits_fn, train, val, *args, **kwargs)

    monkeypatch.setattr(runner, "fit", recording)
    return calls


def test_a_refit_trains_a_fresh_tuner_on_train_and_validation_for_the_selected_epochs(monkeypatch):
    calls = _recording_fit(monkeypatch)
    bench = _bench()
    selected = run_one(bench, _plan("linear-probe", epochs=4), 0, QuietObserver())
    refit = run_one(bench, _plan("linear-probe", epochs=4, refit=True), 0, QuietObserver())
    assert [(c["images"], c["validated"], c["epochs"]) for c in calls] == [(48, True, None), (48, True, None), (60, False, refit.best_epoch)]
    assert calls[2]["module"] is not calls[1]["module"]  # a fresh tuner
    assert refit.status == "ok" and refit.refit_epochs == refit.best_epoch >= 1 and refit.refit_seconds > 0
    # selection is the same run as without refit; only the test is of the refit model
    for key in ("best_epoch", "val_accuracy", "train_accuracy", "split_sizes", "history", "epochs_run"):
        if key != "history":
            assert getattr(refit, key) == getattr(selected, key), key
    assert [(h.train_loss, h.val_loss) for h in refit.history] == [(h.train_loss, h.val_loss) for h in selected.history]
    assert refit.cached_features is True and refit.test_total == 30
    again = run_one(bench, _plan("linear-probe", epochs=4, refit=True), 0, QuietObserver())
    assert (again.test_accuracy, again.test_loss, again.confusion_matrix) == (refit.test_accuracy, refit.test_loss, refit.confusion_matrix)
    assert refit.test_loss != selected.test_loss  # another model was tested
    # a tuner trained through its whole forward, augmented: the refit draws its own crops from the seed
    calls.clear()
    prompts = run_one(bench, _plan("vpt-shallow", epochs=2, refit=True, augment=True), 0, QuietObserver())
    assert prompts.status == "ok" and prompts.refit_epochs == prompts.best_epoch and prompts.cached_features is False
    assert [(c["images"], c["validated"]) for c in calls] == [(48, True), (60, False)]


def test_the_refit_model_is_the_one_tested(monkeypatch):
    """The test evaluation sees the refit tuner's weights: a run whose refit is broken to NaN is
    recorded as diverged by its refit, with nothing measured on the test split."""
    real = runner.fit

    def breaking(module, logits_fn, train, val, *args, **kwargs):
        outcome = real(module, logits_fn, train, val, *args, **kwargs)
        if val is None:
            with torch.no_grad():
                for p in module.parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))
        return outcome

    monkeypatch.setattr(runner, "fit", breaking)
    record = run_one(_bench(), _plan("linear-probe", epochs=2, refit=True), 0, QuietObserver())
    assert record.status == "diverged" and "non-finite logits on the test (30 of 30 images)" in record.error
    assert "train" not in record.error.split("non-finite logits on the")[1]  # train and validation are the selected model's


def test_augmented_runs_train_through_the_whole_tuner_reproducibly():
    bench = _bench()
    plain = run_one(bench, _plan("linear-probe", epochs=2), 0, QuietObserver())
    first, second = (run_one(bench, _plan("linear-probe", epochs=2, augment=True), 0, QuietObserver()) for _ in range(2))
    assert plain.cached_features is True and first.cached_features is False and first.features_from is None
    assert first.status == "ok" and [h.train_loss for h in first.history] == [h.train_loss for h in second.history]
    assert first.test_accuracy == second.test_accuracy and first.confusion_matrix == second.confusion_matrix
    assert [h.train_loss for h in first.history] != pytest.approx([h.train_loss for h in plain.history])
    other_seed = run_one(bench, _plan("linear-probe", epochs=2, augment=True), 1, QuietObserver())
    assert [h.train_loss for h in other_seed.history] != [h.train_loss for h in first.history]


def test_default_settings_leave_a_run_as_it_was(monkeypatch):
    calls = _recording_fit(monkeypatch)
    record = run_one(_bench(), _plan("linear-probe"), 0, QuietObserver())
    explicit = run_one(_bench(), _plan("linear-probe", momentum=0.9, schedule="constant", warmup_epochs=0, label_smoothing=0.0, augment=False, refit=False), 0, QuietObserver())
    assert record.refit_epochs is None and record.refit_seconds is None and len(calls) == 2
    assert record.cached_features is True and record.features_from == "computed"
    assert [(h.train_loss, h.val_loss) for h in record.history] == [(h.train_loss, h.val_loss) for h in explicit.history]
    assert record.test_accuracy == explicit.test_accuracy
    assert "refit_epochs" in record.json_data() and "refit_epochs" not in record.csv_row()


def test_the_report_names_the_refit_runs():
    from vptbench.reporting.markdown import _refit_note
    from vptbench.results.records import RunRecord

    def record(seed, refit_epochs=None):
        return RunRecord(experiment="E3", tuner="vpt-shallow", seed=seed, status="failed", refit_epochs=refit_epochs)

    assert _refit_note([record(0)]) == []
    (note,) = _refit_note([record(0, 4), record(1, 1), record(2)])
    assert note == (
        "- Refit on train + validation with the epochs selected on validation, then tested (VPT's protocol): "
        "E3-seed0 for 4 epochs, E3-seed1 for 1 epoch; the other runs were tested as selected on validation."
    )
