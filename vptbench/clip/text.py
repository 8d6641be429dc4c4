"""CLIP's text path with learnable context vectors spliced in after SOS (CoOp), not a forked model.

Prompts are tokenised with placeholder words ("X X X X glioma.") whose embeddings the context
replaces, so the EOS position that CLIP pools is unchanged. Causality must be requested
explicitly (`is_causal=True`): under SDPA the mask helper returns None and attention would
otherwise silently become bidirectional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel, CLIPTextConfig


def text_config(clip: CLIPModel) -> CLIPTextConfig:
    """`clip.config.text_config`: CLIPConfig always makes it a CLIPTextConfig, though its
    annotation also admits the dict or None it may be given."""
    return cast("CLIPTextConfig", clip.config.text_config)


def eos_positions(clip: CLIPModel, input_ids: Tensor) -> Tensor:
    """Where CLIP pools: the first EOS token (legacy configs with eos id 2: the largest id)."""
    eos = clip.text_model.eos_token_id
    if eos == 2:
        return input_ids.to(torch.int).argmax(dim=-1)
    return (input_ids.to(torch.int) == eos).int().argmax(dim=-1)


def text_features_with_context(
    clip: CLIPModel, input_ids: Tensor, attention_mask: Tensor, context: Tensor, masks: dict | None = None
) -> Tensor:
    """Projected text features with `context` ((n_ctx, width) shared, or (classes, n_ctx, width))
    replacing the token embeddings at positions 1..n_ctx.

    `masks` keeps the attention mask between calls with the same prompts: building it inspects the
    padding on the host, which on CUDA is a device synchronisation every step.
    """
    text = clip.text_model
    tokens = text.embeddings.token_embedding(input_ids)
    if context.dim() == 2:
        context = context.unsqueeze(0).expand(tokens.shape[0], -1, -1)
    n_ctx = context.shape[1]
    tokens = torch.cat([tokens[:, :1], context.to(tokens.dtype), tokens[:, 1 + n_ctx :]], dim=1)
    hidden = text.embeddings(inputs_embeds=tokens)
    masks = {} if masks is None else masks
    key = (hidden.device, hidden.dtype, tuple(hidden.shape))
    if key not in masks:
        from transformers.masking_utils import create_causal_mask

        # no cache, passed by position: transformers renamed that argument (past_key_values, then cache)
        masks[key] = create_causal_mask(text.config, hidden, attention_mask, None)
    hidden = text.encoder(inputs_embeds=hidden, attention_mask=masks[key], is_causal=True).last_hidden_state
    hidden = text.final_layer_norm(hidden)
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos_positions(clip, input_ids)]
    return clip.text_projection(pooled)
