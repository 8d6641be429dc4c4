"""LoRA (Hu et al., 2022): trainable low-rank updates beside the frozen vision-tower projections.

peft injects the adapters into `clip.vision_model` only, so same-named text-tower layers stay
untouched and CLIP itself is not forked.
"""

from __future__ import annotations

from typing import Annotated, Literal

from peft import LoraConfig, inject_adapter_in_model
from pydantic import Field
from torch import Tensor, nn
from transformers import CLIPModel

from vptbench.clip.features import image_features
from vptbench.protocol import Task, TunerConfig
from vptbench.tuners.heads import HeadKind, make_head

# Every Linear in a CLIP encoder layer; naming them here rejects typos when the TOML is validated,
# before any model is built.
TargetModule = Literal["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


class LoRAConfig(TunerConfig):
    rank: Annotated[int, Field(ge=1, description="rank r of each low-rank update")] = 8
    alpha: Annotated[float, Field(gt=0, description="updates are scaled by alpha / rank")] = 16
    dropout: Annotated[float, Field(ge=0, lt=1, description="dropout on the adapters' input")] = 0.0
    target_modules: Annotated[list[TargetModule], Field(min_length=1, description="vision-layer Linears to adapt")] = ["q_proj", "v_proj"]
    head: HeadKind = Field("linear", description="linear head on projected features, or CLIP's text classifier")


class LoRA(nn.Module):
    Config = LoRAConfig

    def __init__(self, config: LoRAConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__()
        adapters = LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=list(config.target_modules)
        )
        self.clip = clip
        inject_adapter_in_model(adapters, clip.vision_model)
        self.head = make_head(config.head, clip, task)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.head(image_features(self.clip, pixel_values))
