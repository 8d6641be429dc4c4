"""Heads that turn projected image features into class logits, shared by the built-in tuners."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor, nn

from vptbench.clip.features import class_prompts, class_text_features, cosine_logits, image_features
from vptbench.contract import source_digest
from vptbench.protocol import Task

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPModel

HeadKind = Literal["linear", "text"]


class LinearHead(nn.Linear):
    """A trainable linear classifier on the projected features (the reference study's head); a
    `Linear` itself rather than a wrapper, since each module call is a share of a small head's step."""

    def __init__(self, clip: CLIPModel, task: Task, bias: bool = True) -> None:
        projection_dim = clip.config.projection_dim
        assert projection_dim is not None  # CLIPModel builds its projections with it
        super().__init__(projection_dim, task.num_classes, bias=bias)


class TextHead(nn.Module):
    """CLIP's frozen zero-shot classifier: scaled cosine similarity to class-prompt embeddings,
    computed once per suite from the untouched text tower."""

    text_features: Tensor  # a buffer

    def __init__(self, clip: CLIPModel, task: Task, templates: list[str] | None = None) -> None:
        super().__init__()
        self.clip = [clip]  # a list keeps CLIP out of this module's parameters (its owner holds it)
        templates = templates or task.templates

        @torch.no_grad()
        def compute() -> Tensor:
            return class_text_features(clip, class_prompts(task.tokenizer, task.class_names, templates))

        self.register_buffer("text_features", task.reuse(f"class-text-features:{templates}", compute))

    def forward(self, features: Tensor) -> Tensor:
        return cosine_logits(self.clip[0], features, self.text_features)


class LiveTextHead(nn.Module):
    """The text classifier recomputed every step, for strategies that train the text tower."""

    def __init__(self, clip: CLIPModel, task: Task) -> None:
        super().__init__()
        self.clip = [clip]
        self.prompts = class_prompts(task.tokenizer, task.class_names, task.templates)

    def forward(self, features: Tensor) -> Tensor:
        return cosine_logits(self.clip[0], features, class_text_features(self.clip[0], self.prompts))


def make_head(kind: HeadKind, clip: CLIPModel, task: Task) -> nn.Module:
    return LinearHead(clip, task) if kind == "linear" else TextHead(clip, task)


class FrozenFeatureTuner(nn.Module):
    """Frozen CLIP image features under a head; the harness caches `encode` once for all epochs
    (a `vptbench.protocol.FeatureTuner`)."""

    caches_features: ClassVar[bool] = True

    def __init__(self, clip: CLIPModel, head: nn.Module) -> None:
        super().__init__()
        self.clip = clip.eval()
        self.head = head

    def train(self, mode: bool = True) -> FrozenFeatureTuner:
        """Everything but the frozen backbone switches: it stays in eval mode, as its cached features
        were computed (and walking its hundreds of modules twice an epoch is a fifth of a linear probe's time)."""
        self.training = mode
        for child in self.children():
            if child is not self.clip:
                child.train(mode)
        return self

    def feature_key(self) -> str:
        """Tuners that inherit this `encode` share their cached features, and one that overrides it
        gets its own; an edited `encode` gets a new key (its source is hashed into it). An `encode`
        that reads the tuner's params must name them in its own key."""
        encode = type(self).encode
        return f"{encode.__module__}.{encode.__qualname__}:{source_digest(encode)}"

    def encode(self, pixel_values: Tensor) -> Tensor:
        return image_features(self.clip, pixel_values)

    def classify(self, features: Tensor) -> Tensor:
        return self.head(features)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.classify(self.encode(pixel_values))
