"""BitFit (Ben Zaken et al., 2022): only the vision tower's bias terms train, plus the head.

The text tower and `visual_projection` (which has no bias in CLIP) stay frozen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import Field
from torch import Tensor, nn

from vptbench.clip.features import image_features
from vptbench.protocol import Task, TunerConfig
from vptbench.tuners.heads import HeadKind, make_head

if TYPE_CHECKING:  # annotations only: `vptbench list` then never imports transformers
    from transformers import CLIPModel


class BitFitConfig(TunerConfig):
    head: HeadKind = Field("linear", description="linear head on projected features, or CLIP's text classifier")
    include_layer_norm: bool = Field(True, description="also train LayerNorm biases (the paper trains every bias)")


class BitFit(nn.Module):
    Config = BitFitConfig

    def __init__(self, config: BitFitConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__()
        self.clip = clip
        for bias in vision_biases(clip, config.include_layer_norm):
            bias.requires_grad_(True)
        self.head = make_head(config.head, clip, task)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.head(image_features(self.clip, pixel_values))


def vision_biases(clip: CLIPModel, include_layer_norm: bool) -> Iterator[nn.Parameter]:
    """Every module's own `bias` in the vision tower, LayerNorms' optionally."""
    for module in clip.vision_model.modules():
        if include_layer_norm or not isinstance(module, nn.LayerNorm):
            bias = dict(module.named_parameters(recurse=False)).get("bias")
            if bias is not None:
                yield bias
