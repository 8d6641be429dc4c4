"""Zero-shot: CLIP's own text classifier built from class-name prompts; nothing is trained."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from vptbench.protocol import Task, TunerConfig
from vptbench.registry.schema import Template
from vptbench.tuners.heads import FrozenFeatureTuner, TextHead

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel


class ZeroShotConfig(TunerConfig):
    templates: Annotated[list[Template], Field(min_length=1)] | None = Field(
        None, description="prompt templates to ensemble; defaults to the dataset's"
    )


class ZeroShot(FrozenFeatureTuner):
    Config = ZeroShotConfig

    def __init__(self, config: ZeroShotConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__(clip, TextHead(clip, task, config.templates))
