"""Dual prompt tuning: visual prompts plus learnable text context vectors (CoOp), classifying by
CLIP's scaled cosine similarity between prompted image features and context-conditioned class texts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from vptbench.clip.features import cosine_logits, tokenize
from vptbench.clip.text import text_features_with_context
from vptbench.clip.vision import prompted_image_features
from vptbench.errors import DataError
from vptbench.protocol import Task, TunerConfig
from vptbench.tuners.vpt import VisualPrompts

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel

CONTEXT_INIT_STD = 0.02  # CoOp's random initialisation
DEFAULT_CONTEXT_INIT = "a photo of a"  # CoOp's


class TextContextConfig(TunerConfig):
    """CoOp's learnable text context, shared by `dual-prompt` and `coop` (vptbench/tuners/coop.py)."""

    context_init: Annotated[str, Field(min_length=1, pattern=r"\S")] | None = Field(
        None, description=f"phrase whose embeddings initialise the context (default '{DEFAULT_CONTEXT_INIT}' unless context_tokens is set)"
    )
    context_tokens: Annotated[int, Field(ge=1)] | None = Field(None, description="a random context of this length instead of a phrase")
    class_specific: bool = Field(False, description="one context per class instead of one shared")

    @model_validator(mode="after")
    def _one_context_source(self) -> TextContextConfig:
        """TOML has no null, so a phrase is the default only while neither is set."""
        if self.context_init is not None and self.context_tokens is not None:
            raise ValueError("set one of context_init (a phrase) and context_tokens (a count), not both")
        if self.context_tokens is None:
            self.context_init = self.context_init or DEFAULT_CONTEXT_INIT
        return self


class VisualPromptConfig(TunerConfig):
    visual_tokens: Annotated[int, Field(ge=0, description="visual prompt tokens; 0 gives text-only CoOp")] = 4
    visual_deep: bool = Field(False, description="fresh visual prompts in every layer")
    visual_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class DualPromptConfig(TextContextConfig, VisualPromptConfig):
    """Visual prompts and a text context. Pydantic lists the fields of the later base first, so the
    params keep their order (visual, then text) in reports and run.json."""


class DualPrompt(nn.Module):
    Config = DualPromptConfig
    input_ids: Tensor  # buffers
    attention_mask: Tensor

    def __init__(self, config: DualPromptConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__()
        self.clip = clip
        self.visual = VisualPrompts(clip, config.visual_tokens, config.visual_deep, config.visual_dropout) if config.visual_tokens else None
        context, tokens = context_and_prompts(config, clip, task)
        self.context = nn.Parameter(context)
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)
        self.masks: dict = {}  # the prompts never change, so neither does their attention mask

    def forward(self, pixel_values: Tensor) -> Tensor:
        prompts = self.visual.per_layer(len(pixel_values)) if self.visual is not None else None
        image = prompted_image_features(self.clip, pixel_values, prompts)
        text = text_features_with_context(self.clip, self.input_ids, self.attention_mask, self.context, self.masks)
        return cosine_logits(self.clip, image, text)


def context_and_prompts(config: TextContextConfig, clip: CLIPModel, task: Task, tuner: str = "dual-prompt") -> tuple[Tensor, dict[str, Tensor]]:
    """The initial context, `(n_ctx, width)` or `(classes, n_ctx, width)` when class-specific, and the
    tokenised class prompts "{placeholder words} {class}." whose leading words it replaces."""
    context, prefix = _initial_context(config, clip, task, tuner)
    if config.class_specific:
        context = context.unsqueeze(0).repeat(task.num_classes, 1, 1)
    return context, tokenize(task.tokenizer, [f"{prefix} {name}." for name in task.class_names])


def _initial_context(config: TextContextConfig, clip: CLIPModel, task: Task, tuner: str = "dual-prompt") -> tuple[Tensor, str]:
    """The context vectors and the placeholder words they replace in every class prompt."""
    embedding = clip.text_model.embeddings.token_embedding
    if config.context_init is None:
        n_ctx = config.context_tokens
        assert n_ctx is not None  # the config's validator sets context_init unless context_tokens is set
        context = torch.randn(n_ctx, embedding.embedding_dim) * CONTEXT_INIT_STD
        return context, " ".join(["X"] * n_ctx)
    ids = task.tokenizer(config.context_init, add_special_tokens=False)["input_ids"]
    if not ids:
        raise DataError(f"{tuner}: context_init tokenises to nothing")
    with torch.no_grad():
        context = embedding(torch.tensor(ids, device=embedding.weight.device)).detach().clone().cpu()
    return context, config.context_init
