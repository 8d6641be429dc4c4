"""Projected image and text features, portable across transformers 4.x and 5.x."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import CLIPModel, PreTrainedTokenizerBase

from vptbench.errors import DataError


def pooled(output: Tensor | object) -> Tensor:
    """transformers 5.x returns an output object where 4.x returned the projected tensor."""
    return output if torch.is_tensor(output) else output.pooler_output  # type: ignore[attr-defined]


def image_features(clip: CLIPModel, pixel_values: Tensor) -> Tensor:
    """CLIP's projected (unnormalised) image embedding."""
    return pooled(clip.get_image_features(pixel_values=pixel_values))


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> dict[str, Tensor]:
    """Padded token ids and mask. A prompt over the length limit is an error, not a truncation:
    cut short, it loses its class name's tokens and every class may get the same prompt."""
    limit = tokenizer.model_max_length
    batch = tokenizer(texts, padding=True, return_tensors="pt", verbose=False)
    for text, length in zip(texts, batch["attention_mask"].sum(dim=1).tolist(), strict=True):
        if length > limit:
            raise DataError(f"prompt {text!r} is {length} tokens, over the {limit}-token text limit")
    return {key: batch[key] for key in ("input_ids", "attention_mask")}


def class_prompts(tokenizer: PreTrainedTokenizerBase, class_names: list[str], templates: list[str]) -> list[dict[str, Tensor]]:
    """One tokenised batch of class prompts per template."""
    return [tokenize(tokenizer, [template.format(name) for name in class_names]) for template in templates]


def class_text_features(clip: CLIPModel, prompts: list[dict[str, Tensor]]) -> Tensor:
    """One unit-norm embedding per class, averaged over templates (CLIP's prompt ensembling)."""
    device = clip.text_projection.weight.device
    per_template = [
        normalize(pooled(clip.get_text_features(**{k: v.to(device) for k, v in tokens.items()})))
        for tokens in prompts
    ]
    return normalize(torch.stack(per_template).mean(dim=0))


def normalize(features: Tensor) -> Tensor:
    return features / features.norm(dim=-1, keepdim=True)


def cosine_logits(clip: CLIPModel, image: Tensor, text: Tensor) -> Tensor:
    """CLIP's classifier: temperature-scaled cosine similarity of images to class texts."""
    return clip.logit_scale.exp() * normalize(image) @ normalize(text).t()
