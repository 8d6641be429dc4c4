"""Full fine-tuning: every vision-tower weight trains, plus the head (and optionally the text tower)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator
from torch import Tensor, nn

from vptbench.clip.features import image_features
from vptbench.protocol import Task, TunerConfig
from vptbench.tuners.heads import HeadKind, LiveTextHead, make_head

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel


class FullFinetuneConfig(TunerConfig):
    head: HeadKind = "linear"
    train_text: bool = Field(False, description="also train the text tower (text head only)")

    @model_validator(mode="after")
    def _text_needs_text_head(self) -> FullFinetuneConfig:
        if self.train_text and self.head != "text":
            raise ValueError("train_text needs head = \"text\": the linear head never uses the text tower")
        return self


class FullFinetune(nn.Module):
    Config = FullFinetuneConfig

    def __init__(self, config: FullFinetuneConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__()
        self.clip = clip
        clip.vision_model.requires_grad_(True)
        clip.visual_projection.requires_grad_(True)
        if config.train_text:
            clip.text_model.requires_grad_(True)
            clip.text_projection.requires_grad_(True)
            self.head: nn.Module = LiveTextHead(clip, task)
        else:
            self.head = make_head(config.head, clip, task)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.head(image_features(self.clip, pixel_values))
