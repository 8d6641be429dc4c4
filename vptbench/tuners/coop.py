"""CoOp (Zhou et al., IJCV 2022): learnable text context vectors in place of the prompt's words
("X X X X {class}."), classifying CLIP's frozen image features by scaled cosine similarity.

The image tower never trains, so its features are cached once per suite (shared with zero-shot and
the linear probe, which encode the same way) and each step runs only the text tower over the class
prompts. `dual-prompt` with `visual_tokens = 0` computes the same logits, with the image tower every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from vptbench.clip.features import cosine_logits
from vptbench.clip.text import text_features_with_context
from vptbench.protocol import Task
from vptbench.tuners.dual_prompt import TextContextConfig, context_and_prompts
from vptbench.tuners.heads import FrozenFeatureTuner

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel


class CoOpConfig(TextContextConfig):
    """`context_init` (a phrase, default "a photo of a") or `context_tokens` (a random context of that
    length), and `class_specific`: the context fields of `dual-prompt`, with their validation."""


class ContextTextHead(nn.Module):
    """CLIP's text classifier over class prompts whose leading words are learnable context vectors:
    the text tower runs on every call, as gradients must reach the context through it."""

    input_ids: Tensor  # buffers
    attention_mask: Tensor

    def __init__(self, config: TextContextConfig, clip: CLIPModel, task: Task, tuner: str = "coop") -> None:
        super().__init__()
        self.clip = [clip]  # a list keeps CLIP out of this module's parameters (its owner holds it)
        context, tokens = context_and_prompts(config, clip, task, tuner)
        self.context = nn.Parameter(context)
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)
        self.masks: dict = {}  # the prompts never change, so neither does their attention mask

    def forward(self, features: Tensor) -> Tensor:
        clip = self.clip[0]
        return cosine_logits(clip, features, text_features_with_context(clip, self.input_ids, self.attention_mask, self.context, self.masks))


class CoOp(FrozenFeatureTuner):
    """`encode` is the inherited frozen projected image features (one cache with zero-shot and the
    linear probe: same `feature_key`); `classify` is the context head, its only trainable part."""

    Config = CoOpConfig

    def __init__(self, config: CoOpConfig, clip: CLIPModel, task: Task) -> None:
        super().__init__(clip, ContextTextHead(config, clip, task))
