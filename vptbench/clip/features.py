"""Projected image and text features, portable across transformers 4.x and 5.x."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vptbench.errors import DataError, ModelError

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel, PreTrainedTokenizerBase

COINCIDENT = 0.9999  # cosine similarity above which two classes' text features count as the same


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


def check_distinct_class_features(model, class_names: list[str], templates: list[str], threshold: float = COINCIDENT) -> None:
    """Refuse, before any training, class prompts whose text features (averaged over the templates,
    as zero-shot uses them) coincide for two distinct classes: zero-shot would sit at chance and a
    text-side tuner at loss ln(classes), and the run would still exit 0. `model` is a LoadedModel.
    One ModelError line names the model, the two closest classes and, where it shows, why."""
    from vptbench.clip.text import eos_positions

    prompts = class_prompts(model.tokenizer, class_names, templates)
    with torch.no_grad():
        features = class_text_features(model.clip, prompts).float()
    similarity = features @ features.t()
    similarity.fill_diagonal_(-2.0)
    best = int(similarity.argmax())
    first, second = sorted(divmod(best, len(class_names)))
    value = float(similarity[first, second])
    if value <= threshold:
        return
    ids = [tokens["input_ids"].cpu() for tokens in prompts]
    pooled_at = [eos_positions(model.clip, batch) for batch in ids]
    if all(torch.equal(batch[first], batch[second]) for batch in ids):
        cause = ": their prompts tokenize to the same ids (does the tokenizer know their words?)"
    elif all(int(at[first]) == int(at[second]) and torch.equal(batch[first, : int(at[first]) + 1], batch[second, : int(at[first]) + 1]) for batch, at in zip(ids, pooled_at, strict=True)):
        at = int(pooled_at[0][first])
        eos, end = model.clip.text_model.eos_token_id, getattr(model.tokenizer, "eos_token_id", None)
        cause = (
            f": the text tower pools token {at} of their prompts, before they differ "
            f"(the text tower's eos_token_id is {eos}, the tokenizer's end token {end})"
        )
    else:
        cause = ""
    raise ModelError(
        f"models.{model.name}: classes {class_names[first]!r} and {class_names[second]!r} get the same text features "
        f"(cosine similarity {value:.6f}){cause}; zero-shot and text prompts cannot tell them apart"
    )


def normalize(features: Tensor) -> Tensor:
    return features / features.norm(dim=-1, keepdim=True)


def cosine_logits(clip: CLIPModel, image: Tensor, text: Tensor) -> Tensor:
    """CLIP's classifier: temperature-scaled cosine similarity of images to class texts."""
    return clip.logit_scale.exp() * normalize(image) @ normalize(text).t()
