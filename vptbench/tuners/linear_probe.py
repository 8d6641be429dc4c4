"""Linear probe: a linear head on CLIP's frozen projected image features."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vptbench.protocol import Task, TunerConfig
from vptbench.tuners.heads import FrozenFeatureTuner, LinearHead

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel


class LinearProbeConfig(TunerConfig):
    bias: bool = True


class LinearProbe(FrozenFeatureTuner):
    Config = LinearProbeConfig

    def __init__(self, config: LinearProbeConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__(clip, LinearHead(clip, task, bias=config.bias))
