"""CLIP's vision path run layer by layer, so prompt tokens can be inserted without forking the model.

The path is embeddings -> pre_layrnorm -> encoder layers -> post_layernorm(CLS) -> visual_projection,
exactly as transformers runs it; with no prompts the result equals `get_image_features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel, CLIPVisionConfig


def vision_config(clip: CLIPModel) -> CLIPVisionConfig:
    """`clip.config.vision_config`: CLIPConfig always makes it a CLIPVisionConfig, though its
    annotation also admits the dict or None it may be given."""
    return cast("CLIPVisionConfig", clip.config.vision_config)


def image_size(clip: CLIPModel) -> int:
    """The side of CLIP's square input images: an int, as CLIP's vision embeddings use it (the
    config's annotation also admits a pair)."""
    return cast(int, vision_config(clip).image_size)


def vpt_init_bound(clip: CLIPModel) -> float:
    """VPT's uniform initialisation range: sqrt(6 / (3 * patch^2 + width))."""
    config = vision_config(clip)
    patch_size = cast(int, config.patch_size)  # an int, as CLIP's vision embeddings use it
    return math.sqrt(6.0 / (3 * patch_size**2 + config.hidden_size))


def prompted_image_features(
    clip: CLIPModel,
    pixel_values: Tensor,
    prompts: Sequence[Tensor | None] | None = None,
) -> Tensor:
    """Projected image features with visual prompts.

    `prompts[i]` (shape `(P, width)`, or `(batch, P, width)` for per-image prompts) is placed in
    the P slots right after CLS before layer i:
    inserted at the first prompted layer, then replacing the previous layer's prompt outputs
    so the sequence length stays constant (VPT-deep). A shallow prompt is `[p, None, ...]`.
    Prompts carry no position embedding and enter after `pre_layrnorm`, as VPT feeds them to the
    encoder's first layer (MaPLe and IVLP instead concatenate before CLIP's `ln_pre`).
    """
    vision = clip.vision_model
    hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
    inserted = 0
    for index, layer in enumerate(vision.encoder.layers):
        prompt = prompts[index] if prompts is not None and index < len(prompts) else None
        if prompt is not None:
            batch = prompt.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
            hidden = torch.cat([hidden[:, :1], batch, hidden[:, 1 + inserted :]], dim=1)
            inserted = prompt.shape[-2]
        hidden = layer(hidden, None)
    return clip.visual_projection(vision.post_layernorm(hidden[:, 0]))
