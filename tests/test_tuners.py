"""Each built-in tuner: exact parameter counts, gradients only where declared, frozen weights untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from vptbench.demo_model.tokenizer import build_tokenizer, special_token_ids
from vptbench.harness.runner import count_parameters
from vptbench.models import CLIP_TEXT_POSITIONS
from vptbench.plugins import load_tuner
from vptbench.protocol import Task
from vptbench.testing import tiny_clip

BRAIN_MRI = ["glioma", "meningioma", "no tumor", "pituitary"]


def build(name: str, clip, task, **params):
    cls = load_tuner(name)
    return cls(cls.Config(**params), clip.requires_grad_(False), task)


@pytest.fixture(scope="module")
def vit_b16_meta():
    """CLIP ViT-B/16 geometry with uninitialised weights: exact shapes without the cost of random init."""
    tokenizer = build_tokenizer(max_length=CLIP_TEXT_POSITIONS)
    text = special_token_ids(tokenizer)
    with torch.device("meta"):
        clip = CLIPModel(CLIPConfig(text_config=text, vision_config={"patch_size": 16}, projection_dim=512))
    clip = clip.to_empty(device="cpu")
    for embeddings in (clip.text_model.embeddings, clip.vision_model.embeddings):
        embeddings.position_ids.copy_(torch.arange(embeddings.position_ids.shape[-1]))
    return clip, Task(BRAIN_MRI, ["a brain MRI scan showing {}."], tokenizer)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("zero-shot", {}, 0),
        ("linear-probe", {}, 2_052),  # 512 x 4 + 4
        ("vpt-shallow", {"num_tokens": 1}, 2_820),  # + 768
        ("vpt-deep", {"num_tokens": 1}, 11_268),  # + 12 x 768
        ("dual-prompt", {"visual_tokens": 4, "context_init": "a photo of a"}, 5_120),  # 4 x 768 + 4 x 512
        ("full-finetune", {}, 86_194_692),  # vision tower + projection + head
    ],
)
def test_trainable_parameters_at_vit_b16_geometry(vit_b16_meta, name, params, expected):
    clip, task = vit_b16_meta
    trainable, total = count_parameters(build(name, copy.deepcopy(clip), task, **params))
    assert trainable == expected
    assert total == 149_620_737 + trainable - (0 if name != "full-finetune" else 86_192_640)


@pytest.mark.slow  # over 1 s: builds ViT-B/16 for every strategy
def test_paper_suite_params_reproduce_the_reported_counts(vit_b16_meta):
    from vptbench.harness.planning import plan_experiments
    from vptbench.registry import load_registry
    from vptbench.registry.load import PACKAGED_CONFIG

    registry, path = load_registry(PACKAGED_CONFIG)
    clip, task = vit_b16_meta
    counts = {}
    for plan in plan_experiments("paper", registry.suites["paper"], path, list(registry.suites["paper"].experiments)):
        counts[plan.id] = count_parameters(plan.tuner(plan.config, copy.deepcopy(clip).requires_grad_(False), task))[0]
    assert counts == {"E1": 0, "E2": 2_052, "E3": 2_820, "E4": 11_268, "E5": 5_120, "E6": 86_194_692}


CASES = [
    ("linear-probe", {}, ("head.",)),
    ("vpt-shallow", {"num_tokens": 2}, ("prompts.", "head.")),
    ("vpt-deep", {"num_tokens": 2, "head": "text"}, ("prompts.",)),
    ("dual-prompt", {"visual_tokens": 2, "visual_deep": True}, ("visual.", "context")),
    ("dual-prompt", {"visual_tokens": 0, "context_tokens": 3, "class_specific": True}, ("context",)),
    ("full-finetune", {}, ("clip.vision_model.", "clip.visual_projection.", "head.")),
    ("full-finetune", {"head": "text", "train_text": True}, ("clip.vision_model.", "clip.visual_projection.", "clip.text_model.", "clip.text_projection.")),
]


@pytest.mark.parametrize(("name", "params", "trainable_prefixes"), CASES)
def test_gradients_reach_exactly_the_declared_parameters(name, params, trainable_prefixes):
    clip, tokenizer, _ = tiny_clip()
    tuner = build(name, clip, Task(["one", "two", "three"], ["a photo of the digit {}."], tokenizer), **params)
    declared = {n for n, p in tuner.named_parameters() if p.requires_grad}
    assert declared and all(n.startswith(trainable_prefixes) for n in declared)
    assert all(any(n.startswith(prefix) for n in declared) for prefix in trainable_prefixes)

    before = {n: p.detach().clone() for n, p in tuner.named_parameters()}
    optimizer = torch.optim.Adam([p for p in tuner.parameters() if p.requires_grad], lr=1e-2)
    torch.nn.functional.cross_entropy(tuner(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    with_grad = {n for n, p in tuner.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad <= declared
    assert len(with_grad) >= 0.9 * len(declared)  # a few (e.g. the last layer's unused tokens) may see zero grad
    optimizer.step()
    changed = {n for n, p in tuner.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= declared


def test_text_context_is_initialised_from_the_phrase():
    clip, tokenizer, _ = tiny_clip()
    task = Task(["one", "two"], ["{}"], tokenizer)
    tuner = build("dual-prompt", clip, task, visual_tokens=0, context_init="a photo of a")
    ids = tokenizer("a photo of a", add_special_tokens=False)["input_ids"]
    assert torch.equal(tuner.context.detach(), clip.text_model.embeddings.token_embedding.weight[ids])
    # with the context untouched, the classifier is CLIP's own zero-shot classifier for "a photo of a {}."
    zero_shot = build("zero-shot", copy.deepcopy(clip), task, templates=["a photo of a {}."])
    pixels = torch.randn(3, 3, 32, 32)
    assert torch.allclose(tuner.eval()(pixels), zero_shot.eval()(pixels), atol=1e-5)


@pytest.mark.parametrize(("name", "params"), [("vpt-deep", {"num_tokens": 4}), ("dual-prompt", {"visual_tokens": 4})])
def test_prompt_dropout_draws_a_mask_per_image_and_is_off_in_eval(name, params):
    """As in VPT: dropout on the prompts expanded to the batch, so each image drops its own entries."""
    clip, tokenizer, _ = tiny_clip()
    tuner = build(name, clip, Task(["one", "two"], ["{}"], tokenizer), **params, **{"dropout" if name == "vpt-deep" else "visual_dropout": 0.5})
    pixels = torch.randn(1, 3, 32, 32).expand(4, -1, -1, -1)  # one image, four times
    torch.manual_seed(0)
    trained = tuner.train()(pixels)
    assert len({tuple(row.tolist()) for row in trained}) == 4
    evaluated = tuner.eval()(pixels)
    assert torch.equal(evaluated[0].expand(4, -1), evaluated)


@pytest.mark.parametrize("name", ["zero-shot", "linear-probe"])
def test_frozen_feature_tuners_switch_only_the_head(name):
    """Their features are cached in eval mode, so the frozen backbone must never train."""
    clip, tokenizer, _ = tiny_clip()
    tuner = build(name, clip.train(), Task(["one", "two"], ["{}"], tokenizer))
    tuner.train()
    assert tuner.training and tuner.head.training
    assert not any(module.training for module in tuner.clip.modules())
    tuner.eval()
    assert not any(module.training for module in tuner.modules())


def test_a_frozen_feature_subclass_switches_its_own_modules():
    from vptbench.tuners.heads import FrozenFeatureTuner, LinearHead

    clip, tokenizer, _ = tiny_clip()
    task = Task(["one", "two"], ["{}"], tokenizer)

    class WithDropout(FrozenFeatureTuner):
        def __init__(self):
            super().__init__(clip.requires_grad_(False), LinearHead(clip, task))
            self.dropout = torch.nn.Dropout(0.5)

    tuner = WithDropout().train()
    assert tuner.dropout.training and not tuner.clip.training
    assert not tuner.eval().dropout.training


def test_config_rejects_unknown_keys_and_bad_combinations():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        load_tuner("vpt-deep").Config(num_token=3)
    with pytest.raises(ValidationError, match="set one of context_init .* not both"):
        load_tuner("dual-prompt").Config(context_init="a photo of a", context_tokens=4)
    dual = load_tuner("dual-prompt").Config
    assert (dual().context_init, dual(context_tokens=4).context_init) == ("a photo of a", None)
    with pytest.raises(ValidationError, match="train_text needs head"):
        load_tuner("full-finetune").Config(train_text=True)


@pytest.mark.parametrize("name", ["zero-shot", "linear-probe", "vpt-shallow", "vpt-deep", "dual-prompt", "full-finetune"])
def test_builtin_tuners_pass_the_public_contract_check(name):
    from vptbench.testing import check_tuner

    counts = check_tuner(load_tuner(name))
    assert 0 <= counts["trainable_params"] < counts["total_params"]


def test_contract_check_validates_params_as_a_run_does():
    from vptbench.testing import TunerCheckError, check_tuner

    with pytest.raises(TunerCheckError, match=r'params.num_tokens: Input should be a valid integer \(got "2"\)'):
        check_tuner(load_tuner("vpt-shallow"), {"num_tokens": "2"})


def test_contract_check_catches_a_tuner_that_trains_frozen_weights():
    from vptbench.testing import TunerCheckError, check_tuner

    class Sneaky(load_tuner("linear-probe")):
        def __init__(self, config, clip, task):
            super().__init__(config, clip, task)
            self.clip.visual_projection.weight.requires_grad_(True)

        def encode(self, pixel_values):  # claims to be frozen, but its encoder now trains
            return super().encode(pixel_values)

    with pytest.raises(TunerCheckError, match="encode depends on trainable parameters"):
        check_tuner(Sneaky)
