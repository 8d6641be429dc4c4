"""Fingerprints of what a suite ran on: the model (weights, settings, tokenizer, normalisation) and
the decoded images. run.json records them, so that a resume, or a report combining run
directories, notices weights or data that changed under the same names."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

from vptbench.data import ImageData
from vptbench.models import LoadedModel

LENGTH = 16  # hex digits kept in run.json: enough to tell two models apart, short enough to read
MODEL_SCHEME = 2  # how the model is hashed; 1 (unrecorded) also hashed the transformers release


def model_digest(model: nn.Module) -> str:
    """A hash of the model's settings and weights (settings no weight shows, too: activation,
    layer-norm epsilon, heads, attention kernel)."""
    config = getattr(model, "config", None)
    settings = {k: v for k, v in config.to_dict().items() if k != "transformers_version"} if config is not None else {}  # an upgrade is no new model
    attention = getattr(config, "_attn_implementation", None)
    digest = hashlib.sha256(f"{json.dumps(settings, sort_keys=True, default=str)}|{attention}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def suite_fingerprints(model: LoadedModel, data: ImageData) -> dict[str, Any]:
    """The model's and the dataset's fingerprints as run.json records them."""
    tokenizer = model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    model_hash = hashlib.sha256(f"{model_digest(model.clip)}|{vocabulary}|{model.mean_std}".encode())
    data_hash = hashlib.sha256()
    for name in ("train", "test", "validation"):
        split = getattr(data, name)
        if split is not None:
            data_hash.update(f"|{name}:{tuple(split.pixels.shape)}|".encode())
            data_hash.update(split.pixels.cpu().contiguous().numpy())
            data_hash.update(split.labels.cpu().contiguous().numpy())
    return {"model": model_hash.hexdigest()[:LENGTH], "dataset": data_hash.hexdigest()[:LENGTH], "model_scheme": MODEL_SCHEME}

