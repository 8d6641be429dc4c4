"""Visual prompt tuning (Jia et al., 2022): learnable tokens in a frozen CLIP vision tower.

Shallow VPT inserts the tokens once, before the first layer; deep VPT gives every layer fresh
tokens that replace the previous layer's prompt outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from vptbench.clip.vision import prompted_image_features, vision_config, vpt_init_bound
from vptbench.protocol import Task, TunerConfig
from vptbench.tuners.heads import HeadKind, make_head

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel


class VisualPrompts(nn.Module):
    """`(depth, tokens, width)` prompt tokens, VPT-initialised, with optional prompt dropout."""

    def __init__(self, clip: CLIPModel, num_tokens: int, deep: bool, dropout: float = 0.0) -> None:
        super().__init__()
        config = vision_config(clip)
        depth = config.num_hidden_layers if deep else 1
        bound = vpt_init_bound(clip)
        self.tokens = nn.Parameter(torch.empty(depth, num_tokens, config.hidden_size).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout)

    def per_layer(self, batch_size: int) -> list[Tensor]:
        """One `(tokens, width)` prompt per layer, or `(batch, tokens, width)` while dropout is active:
        as in VPT, each image drops its own prompt entries."""
        if not (self.training and self.dropout.p):
            return list(self.tokens.unbind(0))
        return list(self.dropout(self.tokens.unsqueeze(1).expand(-1, batch_size, -1, -1)).unbind(0))


class VptConfig(TunerConfig):
    num_tokens: Annotated[int, Field(ge=1, description="prompt tokens (per layer for deep VPT)")] = 8
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    head: HeadKind = Field("linear", description="linear head on projected features, or CLIP's text classifier")


class VisualPromptTuner(nn.Module):
    Config = VptConfig
    deep = False

    def __init__(self, config: VptConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__()
        self.clip = clip
        self.prompts = VisualPrompts(clip, config.num_tokens, self.deep, config.dropout)
        self.head = make_head(config.head, clip, task)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.head(prompted_image_features(self.clip, pixel_values, self.prompts.per_layer(len(pixel_values))))


class VptShallow(VisualPromptTuner):
    """Prompts inserted once, right after CLS, before the first encoder layer."""


class VptDeep(VisualPromptTuner):
    """Fresh prompts for every encoder layer; the sequence length stays constant."""

    deep = True
