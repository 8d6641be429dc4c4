"""The BitFit tuner honours the harness contract, trains exactly the vision biases, and is discoverable."""

import pytest
from pydantic import ValidationError

from vptbench import plugins
from vptbench.protocol import Task
from vptbench.testing import check_tuner, tiny_clip

# the plugin is a separate distribution: without it installed its tests skip, they do not error
BitFit = pytest.importorskip("vptbench_bitfit").BitFit

# Tiny CLIP (vptbench.testing.tiny_clip): vision width 64, MLP 256, 2 layers, projection_dim 32;
# check_tuner uses 3 classes. The patch embedding and visual_projection have no bias.
# Per layer: q, k, v, out_proj 4 * 64 + fc1 256 + fc2 64 = 576;  layer_norm1, layer_norm2 2 * 64 = 128
# Outside the layers: pre_layrnorm 64 + post_layernorm 64 = 128 (LayerNorm only)
LINEAR_BIASES = 2 * 576  # 1152
LAYER_NORM_BIASES = 2 * 128 + 128  # 384
LINEAR_HEAD = 32 * 3 + 3  # 99


def test_defaults_pass_the_contract_with_exact_count():
    assert check_tuner(BitFit)["trainable_params"] == LINEAR_BIASES + LAYER_NORM_BIASES + LINEAR_HEAD  # 1635


def test_without_layer_norm_and_with_text_head():
    params = {"include_layer_norm": False, "head": "text"}
    assert check_tuner(BitFit, params)["trainable_params"] == LINEAR_BIASES


def test_only_vision_biases_and_head_train():
    clip, tokenizer, _ = tiny_clip()
    tuner = BitFit(BitFit.Config(), clip.requires_grad_(False), Task(["a", "b", "c"], ["{}"], tokenizer))
    trainable = [name for name, p in tuner.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith(("clip.vision_model.", "head.")) for name in trainable)
    assert all(name.endswith(".bias") for name in trainable if name.startswith("clip."))


@pytest.mark.parametrize("params", [{"head": "mlp"}, {"include_layer_norm": "sometimes"}, {"bias": True}])
def test_config_rejects_bad_values(params):
    with pytest.raises(ValidationError):
        BitFit.Config(**params)


def test_installed_entry_point_is_discovered(monkeypatch):
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    assert plugins.find_plugins()["bitfit"].distribution == "vptbench-bitfit"
    assert plugins.load_tuner("bitfit") is BitFit
