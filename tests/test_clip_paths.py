"""Our layer-by-layer CLIP paths equal transformers' own outputs when nothing is injected."""

from __future__ import annotations

import pytest
import torch

from vptbench.clip.features import pooled, tokenize
from vptbench.clip.text import text_features_with_context
from vptbench.clip.vision import prompted_image_features, vpt_init_bound
from vptbench.testing import tiny_clip


@pytest.fixture(params=["sdpa", "eager"])
def model(request):
    clip, tokenizer, _ = tiny_clip(attn_implementation=request.param)
    return clip.eval(), tokenizer


def test_image_path_without_prompts_equals_get_image_features(model):
    clip, _ = model
    pixels = torch.randn(4, 3, 32, 32)
    assert torch.equal(prompted_image_features(clip, pixels), pooled(clip.get_image_features(pixel_values=pixels)))


@pytest.mark.parametrize("texts", [["a photo of a seven.", "a photo of a two three four."], ["a photo of a seven.", "a photo of a two."]], ids=["padded", "unpadded"])
def test_text_path_with_original_embeddings_equals_get_text_features(model, texts):
    """Also proves the path is causal: bidirectional attention would change every output. Without
    padding there is no mask at all under SDPA, and only `is_causal` keeps attention causal."""
    clip, tokenizer = model
    tokens = tokenize(tokenizer, texts)
    assert bool(tokens["attention_mask"].all()) == (texts[1] == "a photo of a two.")
    context = clip.text_model.embeddings.token_embedding(tokens["input_ids"][0, 1:5]).detach()
    ours = text_features_with_context(clip, tokens["input_ids"], tokens["attention_mask"], context)
    assert torch.equal(ours, pooled(clip.get_text_features(**tokens)))


def test_text_path_builds_its_attention_mask_once_per_prompt_set(model, monkeypatch):
    """Building the mask reads the padding on the host (a CUDA sync), so a kept mask must be reused
    and give exactly the same features."""

    clip, tokenizer = model
    tokens = tokenize(tokenizer, ["a photo of a seven.", "a photo of a two three four."])
    context = clip.text_model.embeddings.token_embedding(tokens["input_ids"][0, 1:5]).detach()
    import transformers.masking_utils as masking  # imported where it is used, so `list` never loads transformers

    built, real = [], masking.create_causal_mask
    monkeypatch.setattr(masking, "create_causal_mask", lambda *args: (built.append(1), real(*args))[1])
    masks: dict = {}
    first, second = (text_features_with_context(clip, tokens["input_ids"], tokens["attention_mask"], context, masks) for _ in range(2))
    assert len(built) == 1 and len(masks) == 1
    assert torch.equal(first, second) and torch.equal(first, pooled(clip.get_text_features(**tokens)))


def test_prompts_change_features_and_deep_prompts_keep_sequence_length(model):
    clip, _ = model
    pixels = torch.randn(2, 3, 32, 32)
    width, layers = clip.config.vision_config.hidden_size, clip.config.vision_config.num_hidden_layers
    lengths = []
    hooks = [layer.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1])) for layer in clip.vision_model.encoder.layers]
    deep = [torch.randn(3, width) for _ in range(layers)]
    features = prompted_image_features(clip, pixels, deep)
    for hook in hooks:
        hook.remove()
    patches = (32 // 8) ** 2
    assert lengths == [1 + 3 + patches] * layers
    assert not torch.allclose(features, prompted_image_features(clip, pixels))


def test_vpt_initialisation_bound_at_vit_b16_geometry():
    from transformers import CLIPConfig, CLIPModel

    with torch.device("meta"):
        clip = CLIPModel(CLIPConfig(vision_config={"patch_size": 16}))
    assert vpt_init_bound(clip) == pytest.approx(0.0625)
