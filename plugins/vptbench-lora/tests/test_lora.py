"""The LoRA tuner honours the harness contract, trains exactly its adapters, and is discoverable."""

import pytest
from pydantic import ValidationError

from vptbench import plugins
from vptbench.protocol import Task
from vptbench.testing import check_tuner, tiny_clip

# the plugin is a separate distribution: without it installed its tests skip, they do not error
LoRA = pytest.importorskip("vptbench_lora").LoRA

# Tiny CLIP (vptbench.testing.tiny_clip): vision width 64, 2 layers, projection_dim 32; check_tuner
# uses 3 classes. Rank-r LoRA on a Linear(i, o) adds A (r x i) + B (o x r) = r * (i + o) weights.
# Defaults: r = 8 on q_proj and v_proj (64 -> 64), 2 layers:   2 * 2 * 8 * (64 + 64) = 4096
#           linear head, 32 features -> 3 classes:             32 * 3 + 3            =   99
DEFAULT_TRAINABLE = 4096 + 99
# r = 4 on all six Linears, text head (nothing trainable in it), per layer:
#   q, k, v, out_proj (64 -> 64): 4 * 4 * (64 + 64) = 2048;  fc1 (64 -> 256), fc2 (256 -> 64): 2 * 4 * (64 + 256) = 2560
ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
ALL_TARGETS_TRAINABLE = 2 * (2048 + 2560)


def test_defaults_pass_the_contract_with_exact_count():
    assert check_tuner(LoRA)["trainable_params"] == DEFAULT_TRAINABLE


def test_every_target_with_text_head_and_dropout():
    params = {"rank": 4, "alpha": 8, "dropout": 0.1, "target_modules": ALL_TARGETS, "head": "text"}
    assert check_tuner(LoRA, params)["trainable_params"] == ALL_TARGETS_TRAINABLE


def test_only_vision_adapters_and_head_train():
    clip, tokenizer, _ = tiny_clip()
    tuner = LoRA(LoRA.Config(), clip.requires_grad_(False), Task(["a", "b", "c"], ["{}"], tokenizer))
    trainable = [name for name, p in tuner.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith(("clip.vision_model.", "head.")) for name in trainable)
    assert all(".lora_" in name for name in trainable if name.startswith("clip."))


@pytest.mark.parametrize("params", [{"rank": 0}, {"alpha": 0}, {"dropout": 1.0}, {"target_modules": []}, {"target_modules": ["qkv"]}, {"head": "mlp"}])
def test_config_rejects_bad_values(params):
    with pytest.raises(ValidationError):
        LoRA.Config(**params)


def test_installed_entry_point_is_discovered(monkeypatch):
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    assert plugins.find_plugins()["lora"].distribution == "vptbench-lora"
    assert plugins.load_tuner("lora") is LoRA
