"""The tuner contract (vptbench/contract.py): opt-in feature caching with a safe default key, and the
checks `vptbench run` and `check_tuner` share, each failure with one message."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from vptbench import contract
from vptbench.clip.features import image_features
from vptbench.contract import ContractError
from vptbench.data import ImageData, ImageSplit
from vptbench.harness.guarded import run_guarded
from vptbench.harness.observer import QuietObserver
from vptbench.harness.planning import PlannedExperiment
from vptbench.harness.runner import run_one
from vptbench.harness.workbench import Workbench
from vptbench.plugins import load_tuner
from vptbench.protocol import FeatureTuner, Task, TunerConfig, protocol_problems
from vptbench.registry import Experiment, Training
from vptbench.testing import FeatureCachingWarning, TunerCheckError, check_tuner, tiny_clip

ENCODED: list[int] = []  # batch sizes ClipAdapter.encode saw


class AdapterConfig(TunerConfig):
    reduction: int = 4
    ratio: float = 0.2


class ClipAdapter(nn.Module):
    """A third party's CLIP-Adapter written from the author guide alone: the documented protocol, no
    base class of ours, no `feature_key`."""

    Config = AdapterConfig
    caches_features = True

    def __init__(self, config: AdapterConfig, clip, task: Task) -> None:
        super().__init__()
        dim = clip.config.projection_dim
        self.clip, self.ratio = clip, config.ratio
        self.adapter = nn.Sequential(nn.Linear(dim, dim // config.reduction), nn.ReLU(), nn.Linear(dim // config.reduction, dim))
        self.head = nn.Linear(dim, task.num_classes)

    def encode(self, pixel_values):
        ENCODED.append(len(pixel_values))
        return image_features(self.clip, pixel_values)

    def classify(self, features):
        return self.head(self.ratio * self.adapter(features) + (1 - self.ratio) * features)

    def forward(self, pixel_values):
        return self.classify(self.encode(pixel_values))


def _data(n_per_class: int = 12, classes: int = 3) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    pixels = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=generator, dtype=torch.uint8)
    return ImageData(ImageSplit(pixels, labels), ImageSplit(pixels[::2], labels[::2]), None, [0.5] * 3, [0.25] * 3)


def _bench() -> Workbench:
    clip, tokenizer, _ = tiny_clip()
    return Workbench(type("M", (), {"clip": clip})(), _data(), Task(["a", "b", "c"], ["a photo of a {}."], tokenizer), torch.device("cpu"))


def _plan(tuner: type, epochs: int = 1, **params) -> PlannedExperiment:
    return PlannedExperiment("E", Experiment(tuner="x", params=params), Training(epochs=epochs, batch_size=8), tuner, tuner.Config(**params))


# --- opting in, and the default feature key -------------------------------------------------------


def test_a_third_party_feature_tuner_has_its_features_encoded_once_for_two_seeds():
    bench = _bench()
    ENCODED.clear()
    first = run_one(bench, _plan(ClipAdapter, epochs=2), 0, QuietObserver())
    encoded_first = sum(ENCODED)
    ENCODED.clear()
    second = run_one(bench, _plan(ClipAdapter, epochs=2), 1, QuietObserver())
    assert (first.status, second.status) == ("ok", "ok")
    assert (first.features_from, second.features_from) == ("computed", "memory")
    images = len(bench.data.train) + len(bench.data.test)
    assert encoded_first == 1 + images  # the frozen-encoder check's one image, then the dataset once
    assert ENCODED == [1]  # the second seed: the check alone, its features from memory
    assert first.test_loss != second.test_loss  # seeded heads on the same features


def test_the_default_key_is_shared_by_one_class_and_config_and_by_no_one_else():
    class OtherAdapter(ClipAdapter):  # the same encode, inherited: another plugin's features all the same
        pass

    bench = _bench()
    origins = [run_one(bench, _plan(tuner, **params), 0, QuietObserver()).features_from for tuner, params in ((ClipAdapter, {}), (OtherAdapter, {}), (ClipAdapter, {"ratio": 0.5}), (ClipAdapter, {}))]
    assert origins == ["computed", "computed", "computed", "memory"]
    clip, tokenizer, _ = tiny_clip()
    task = Task(["a", "b", "c"], ["{}"], tokenizer)
    key = contract.default_feature_key(ClipAdapter(AdapterConfig(), clip, task), AdapterConfig(), clip)
    assert key.startswith(f"{__name__}.ClipAdapter|encode:") and "|config:" in key and "|frozen:" in key


def test_a_frozen_tensor_drawn_from_the_seed_keeps_default_keyed_features_apart():
    class RandomProjection(ClipAdapter):
        def __init__(self, config, clip, task):
            super().__init__(config, clip, task)
            self.register_buffer("projection", torch.randn(clip.config.projection_dim, clip.config.projection_dim))

        def encode(self, pixel_values):
            return image_features(self.clip, pixel_values) @ self.projection

    bench = _bench()
    assert [run_one(bench, _plan(RandomProjection), seed, QuietObserver()).features_from for seed in (0, 1, 0)] == ["computed", "computed", "memory"]


def test_the_builtin_zero_shot_and_linear_probe_still_share_their_features():
    bench = _bench()
    zero_shot, linear_probe = (load_tuner(name) for name in ("zero-shot", "linear-probe"))
    assert [run_one(bench, _plan(tuner), 0, QuietObserver()).features_from for tuner in (zero_shot, linear_probe)] == ["computed", "memory"]


def test_encode_and_classify_without_the_opt_in_are_not_cached_and_check_tuner_says_so():
    class Undeclared(nn.Module):
        Config = AdapterConfig

        def __init__(self, config, clip, task):
            super().__init__()
            self.clip, self.head = clip, nn.Linear(clip.config.projection_dim, task.num_classes)

        def encode(self, pixel_values):
            return image_features(self.clip, pixel_values)

        def classify(self, features):
            return self.head(features)

        def forward(self, pixel_values):
            return self.classify(self.encode(pixel_values))

    assert not contract.caches_features(Undeclared) and contract.caches_features(ClipAdapter) and contract.caches_features(load_tuner("linear-probe"))
    assert run_one(_bench(), _plan(Undeclared), 0, QuietObserver()).features_from is None
    with pytest.warns(FeatureCachingWarning, match="Undeclared has encode and classify but no caches_features: the harness runs forward every step"):
        check_tuner(Undeclared)
    Undeclared.caches_features = False  # said on purpose: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_tuner(Undeclared)


def test_the_documented_protocol_declares_every_feature_member():
    assert "caches_features" in FeatureTuner.__annotations__
    for name in ("encode", "classify", "feature_key"):
        assert getattr(FeatureTuner, name).__doc__


def test_a_third_party_feature_tuner_passes_check_tuner_with_its_exact_count():
    # adapter 32 -> 8 -> 32: (32 * 8 + 8) + (8 * 32 + 32) = 552; head 32 * 3 + 3 = 99
    assert check_tuner(ClipAdapter)["trainable_params"] == 552 + 99


# --- each failure, with its one message -----------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({"caches_features": True}, "sets `caches_features = True` but has no `encode` method; sets `caches_features = True` but has no `classify` method"),
        ({"caches_features": 1}, "has `caches_features = 1`, expected True or False"),
    ],
)
def test_an_opt_in_without_its_methods_is_not_a_valid_tuner(attributes, problem):
    tuner = type("HalfDeclared", (nn.Module,), {"Config": AdapterConfig, "__init__": ClipAdapter.__init__, "forward": ClipAdapter.forward, **attributes})
    assert "; ".join(protocol_problems(tuner)) == problem
    with pytest.raises(TunerCheckError, match=f"HalfDeclared.* {problem}"):
        check_tuner(tuner)


class WrongShape(ClipAdapter):
    def classify(self, features):
        return super().classify(features)[:, :2]


def test_logits_of_the_wrong_shape_fail_with_one_message_in_run_and_check_tuner():
    with pytest.raises(ContractError, match=r"^WrongShape returned logits of shape \(4, 2\), expected \(batch, classes\) = \(4, 3\)$"):
        contract.check_logits_shape(WrongShape, torch.zeros(4, 2), 4, 3)
    with pytest.raises(TunerCheckError, match=r"^WrongShape returned logits of shape \(4, 2\), expected \(batch, classes\) = \(4, 3\)$"):
        check_tuner(WrongShape)
    record = run_guarded(_bench(), _plan(WrongShape), 0, QuietObserver())
    assert record.status == "failed" and record.error == "WrongShape returned logits of shape (2, 2), expected (batch, classes) = (2, 3)"


def test_check_logits_evaluates_without_dropout_or_gradient():
    seen = []

    class Recorder(ClipAdapter):
        def forward(self, pixel_values):
            seen.append((self.training, torch.is_grad_enabled()))
            return torch.zeros(len(pixel_values), 5)

    clip, tokenizer, _ = tiny_clip()
    tuner = Recorder(AdapterConfig(), clip, Task(["a", "b", "c"], ["{}"], tokenizer)).train()
    with pytest.raises(ContractError, match=r"^Recorder returned logits of shape \(2, 5\), expected \(batch, classes\) = \(2, 3\)$"):
        contract.check_logits(tuner, tuner, torch.zeros(2, 3, 32, 32), 3)
    assert seen == [(False, False)]


class TrainsItsEncoder(ClipAdapter):
    def __init__(self, config, clip, task):
        super().__init__(config, clip, task)
        clip.visual_projection.requires_grad_(True)


def test_an_encode_that_depends_on_trainable_parameters_fails_with_one_message_in_run_and_check_tuner():
    expected = (
        "TrainsItsEncoder.encode depends on trainable parameters, but the harness encodes once and trains only classify; "
        "freeze what encode uses, or set caches_features = False"
    )
    with pytest.raises(TunerCheckError) as checked:
        check_tuner(TrainsItsEncoder)
    record = run_guarded(_bench(), _plan(TrainsItsEncoder), 0, QuietObserver())
    assert str(checked.value) == record.error == expected and record.status == "failed"


def test_forward_that_is_not_classify_of_encode_fails_check_tuner():
    class Shortcut(ClipAdapter):
        def forward(self, pixel_values):  # skips the adapter that classify applies
            return self.head(self.encode(pixel_values))

    with pytest.raises(TunerCheckError, match=r"^Shortcut.forward\(x\) differs from classify\(encode\(x\)\): caching encode would change its results$"):
        check_tuner(Shortcut)


@pytest.mark.parametrize("key", [3, ""])
def test_a_feature_key_that_is_not_a_str_fails_in_run_and_check_tuner(key):
    class BadKey(ClipAdapter):
        def feature_key(self):
            return key

    message = f"BadKey.feature_key() returned {key!r}, expected a non-empty str naming what encode computes (or None: not shared)"
    with pytest.raises(TunerCheckError) as checked:
        check_tuner(BadKey)
    record = run_guarded(_bench(), _plan(BadKey), 0, QuietObserver())
    assert str(checked.value) == record.error == message


def test_a_feature_key_that_changes_between_builds_fails_check_tuner_and_none_is_computed_each_run():
    builds = iter(range(100))

    class Unstable(ClipAdapter):
        def feature_key(self):
            return f"adapter-{next(builds)}"

    with pytest.raises(TunerCheckError, match=r"^Unstable.feature_key\(\) differs between two builds of one config and seed: its features would never be shared$"):
        check_tuner(Unstable)

    class Unshared(ClipAdapter):
        def feature_key(self):
            return None

    check_tuner(Unshared)
    bench = _bench()
    assert [run_one(bench, _plan(Unshared), seed, QuietObserver()).features_from for seed in (0, 1)] == ["computed", "computed"]

