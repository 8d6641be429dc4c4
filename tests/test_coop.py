"""The `coop` tuner: CoOp's text context on cached image features, equal to dual-prompt without visual tokens."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from vptbench.demo_model.tokenizer import build_tokenizer, special_token_ids
from vptbench.harness.counting import count_parameters
from vptbench.models import CLIP_TEXT_POSITIONS
from vptbench.plugins import load_tuner
from vptbench.protocol import Task
from vptbench.testing import tiny_clip

DIGITS = ["zero", "one", "two"]


def build(name: str, clip, task, **params):
    cls = load_tuner(name)
    return cls(cls.Config(**params), clip.requires_grad_(False), task)


@pytest.fixture(scope="module")
def tiny():
    clip, tokenizer, _ = tiny_clip()
    return clip, Task(DIGITS, ["a photo of the digit {}."], tokenizer)


@pytest.fixture(scope="module")
def demo():
    """The shipped demo CLIP: pretrained weights and the tokenizer its captions were written in."""
    from vptbench.models import load_model
    from vptbench.registry.schema import ModelSpec

    loaded = load_model("demo", ModelSpec(source="builtin", id="demo-clip"))
    return loaded.clip, Task(DIGITS, ["a photo of the digit {}."], loaded.tokenizer)


def _pixels(n: int = 5, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 2_048),  # "a photo of a": 4 tokens x 512
        ({"class_specific": True}, 8_192),  # x 4 classes
        ({"context_tokens": 16}, 8_192),  # CoOp's random 16-token context
    ],
)
def test_trainable_parameters_at_vit_b16_geometry(params, expected):
    tokenizer = build_tokenizer(max_length=CLIP_TEXT_POSITIONS)
    with torch.device("meta"):
        clip = CLIPModel(CLIPConfig(text_config=special_token_ids(tokenizer), vision_config={"patch_size": 16}, projection_dim=512))
    clip = clip.to_empty(device="cpu")
    clip.text_model.embeddings.position_ids.copy_(torch.arange(CLIP_TEXT_POSITIONS))
    task = Task(["glioma", "meningioma", "no tumor", "pituitary"], ["a brain MRI scan showing {}."], tokenizer)
    trainable, total = count_parameters(build("coop", clip, task, **params))
    assert (trainable, total) == (expected, 149_620_737 + expected)


@pytest.mark.parametrize(("params", "shape"), [({}, (4, 64)), ({"class_specific": True}, (3, 4, 64)), ({"context_tokens": 2}, (2, 64))])
def test_only_the_context_trains_and_only_it_receives_gradients(tiny, params, shape):
    clip, task = tiny
    tuner = build("coop", copy.deepcopy(clip), task, **params)
    trainable = {n: p for n, p in tuner.named_parameters() if p.requires_grad}
    assert list(trainable) == ["head.context"] and tuple(trainable["head.context"].shape) == shape
    assert count_parameters(tuner)[0] == trainable["head.context"].numel()

    before = {n: p.detach().clone() for n, p in tuner.named_parameters()}
    optimizer = torch.optim.Adam(trainable.values(), lr=1e-2)
    tuner.train()
    assert not any(module.training for module in tuner.clip.modules())  # the frozen towers stay in eval mode
    torch.nn.functional.cross_entropy(tuner(_pixels(4)), torch.tensor([0, 1, 2, 0])).backward()
    assert {n for n, p in tuner.named_parameters() if p.grad is not None} == {"head.context"}
    assert trainable["head.context"].grad.abs().sum() > 0
    optimizer.step()
    assert {n for n, p in tuner.named_parameters() if not torch.equal(p, before[n])} == {"head.context"}


def test_features_are_the_frozen_image_features_zero_shot_and_linear_probe_cache(tiny):
    from vptbench import contract
    from vptbench.clip.features import image_features

    clip, task = tiny
    tuner = build("coop", copy.deepcopy(clip), task).eval()
    assert contract.caches_features(tuner)
    pixels = _pixels()
    contract.check_frozen_encoder(tuner, pixels)
    contract.check_encode_then_classify(tuner, pixels, tuner(pixels), atol=0)
    assert torch.equal(tuner.encode(pixels), image_features(clip, pixels))
    keys = {contract.feature_key(build(name, copy.deepcopy(clip), task), None) for name in ("coop", "zero-shot", "linear-probe")}
    assert len(keys) == 1  # one encoding serves all three


@pytest.mark.parametrize("params", [{}, {"context_init": "a photo of the digit"}, {"class_specific": True}, {"context_tokens": 3}])
def test_logits_equal_dual_prompts_without_visual_tokens_before_and_after_training(tiny, params):
    """Same context (the random one drawn from the same seed), same images: same logits; and the same
    gradients, so three Adam steps leave them equal (coop steps on classify(encode), as the harness does)."""
    clip, task = tiny
    torch.manual_seed(1)
    coop = build("coop", copy.deepcopy(clip), task, **params)
    torch.manual_seed(1)
    dual = build("dual-prompt", copy.deepcopy(clip), task, visual_tokens=0, **params)
    assert torch.equal(coop.head.context, dual.context)
    pixels, labels = _pixels(6), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(coop.eval()(pixels), dual.eval()(pixels), rtol=1e-6, atol=1e-6)

    features = coop.encode(pixels)
    optimizers = [torch.optim.Adam([p for p in t.parameters() if p.requires_grad], lr=1e-2) for t in (coop, dual)]
    for _ in range(3):
        for logits_fn, optimizer in zip((lambda: coop.train().classify(features), lambda: dual.train()(pixels)), optimizers, strict=True):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(logits_fn(), labels).backward()
            optimizer.step()
    torch.testing.assert_close(coop.head.context, dual.context, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(coop.eval()(pixels), dual.eval()(pixels), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["tiny", "demo"])
def test_at_init_from_a_phrase_logits_equal_zero_shots_with_that_template(model, request):
    """The context is the phrase's own token embeddings and the prompt is "{phrase} {class}.", the text
    zero-shot tokenises for the template "{phrase} {}.": CLIP's own zero-shot classifier."""
    clip, task = request.getfixturevalue(model)
    pixels = _pixels()
    for phrase in ("a photo of a", "a photo of the digit"):
        coop = build("coop", copy.deepcopy(clip), task, context_init=phrase).eval()
        zero_shot = build("zero-shot", copy.deepcopy(clip), task, templates=[phrase + " {}."]).eval()
        torch.testing.assert_close(coop(pixels), zero_shot(pixels), rtol=1e-5, atol=1e-5)


def test_demo_model_logits_equal_dual_prompts(demo):
    clip, task = demo
    coop = build("coop", copy.deepcopy(clip), task, context_init="a photo of the digit").eval()
    dual = build("dual-prompt", copy.deepcopy(clip), task, visual_tokens=0, context_init="a photo of the digit").eval()
    pixels = _pixels()
    torch.testing.assert_close(coop(pixels), dual(pixels), rtol=1e-6, atol=1e-6)


def test_config_takes_the_context_params_only():
    from pydantic import ValidationError

    config = load_tuner("coop").Config
    assert config().model_dump() == {"context_init": "a photo of a", "context_tokens": None, "class_specific": False}
    assert config(context_tokens=4).context_init is None
    with pytest.raises(ValidationError, match="set one of context_init .* not both"):
        config(context_init="a photo of a", context_tokens=4)
    with pytest.raises(ValidationError, match="extra"):
        config(visual_tokens=0)


def test_passes_the_public_contract_check():
    from vptbench.testing import check_tuner

    counts = check_tuner(load_tuner("coop"))
    assert 0 < counts["trainable_params"] < counts["total_params"]


def test_a_harness_run_caches_features_shares_them_and_trains():
    from vptbench.data import ImageData, ImageSplit
    from vptbench.harness.observer import QuietObserver
    from vptbench.harness.planning import PlannedExperiment
    from vptbench.harness.runner import run_one
    from vptbench.harness.workbench import Workbench
    from vptbench.registry import Experiment, Training

    labels = torch.arange(3).repeat_interleave(20)
    pixels = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pixels[:, 0] = (labels * 100).view(-1, 1, 1).to(torch.uint8)  # a learnable colour cue per class
    data = ImageData(ImageSplit(pixels, labels), ImageSplit(pixels[::2], labels[::2]), None, [0.5] * 3, [0.25] * 3)
    clip, tokenizer, _ = tiny_clip()
    bench = Workbench(type("M", (), {"clip": clip})(), data, Task(["a", "b", "c"], ["a photo of a {}."], tokenizer), torch.device("cpu"))

    def plan(name: str, **params):
        tuner = load_tuner(name)
        return PlannedExperiment("E", Experiment(tuner=name, params=params), Training(epochs=3, batch_size=8), tuner, tuner.Config(**params))

    record = run_one(bench, plan("coop"), 0, QuietObserver())
    assert record.status == "ok" and record.cached_features is True and record.features_from == "computed"
    assert record.trainable_params == 4 * 64 and record.epochs_run == 3 and len(record.history) == 3
    assert record.val_accuracy is not None and record.test_accuracy is not None
    assert all(row.val_accuracy is not None for row in record.history)
    assert record.history[-1].train_loss < record.history[0].train_loss
    assert run_one(bench, plan("linear-probe"), 0, QuietObserver()).features_from == "memory"  # one encoding for both
