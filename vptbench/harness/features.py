"""Frozen-encoder features computed once per suite and shared by experiments and seeds.

A feature tuner (one that sets `caches_features = True`, `vptbench.protocol.FeatureTuner`) gets the
features of the whole dataset once per feature key and frozen model (a tuner that changes its copy
of CLIP gets its own); each run then picks its seeded splits out of them. The key is the tuner's
`feature_key()` (zero-shot and the linear probe share CLIP's projected image features), else
`vptbench.contract.default_feature_key`: the tuner class, its `encode` source, its config and its
own frozen tensors, so runs and seeds of one class and config share features and two classes never
do. With a cache folder, they also persist across runs, keyed by a hash of everything they depend
on: the key, weights, model settings, decoded pixels, normalisation, precision and versions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from vptbench.data import ImageData, ImageSplit
from vptbench.errors import UsageError
from vptbench.harness.device import describe
from vptbench.harness.fingerprints import model_digest
from vptbench.results.io import write_atomic, write_problem


def encode_dataset(encode: Callable[[Tensor], Tensor], data: ImageData, transform: Callable[[Tensor], Tensor], batch_size: int) -> ImageData:
    """`encode` applied to every image of every split, in evaluation batches."""

    def split_features(split: ImageSplit) -> ImageSplit:
        chunks = [encode(transform(split.pixels[i : i + batch_size])).float() for i in range(0, len(split), batch_size)]
        return ImageSplit(torch.cat(chunks), split.labels)

    validation = data.validation
    return ImageData(split_features(data.train), split_features(data.test), split_features(validation) if validation is not None else None, data.mean, data.std)


class FeatureStore:
    """Features by (encoder key, precision, frozen model) in memory, and on disk when a folder is given."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--feature-cache: cannot use '{directory}' as a folder: {exc.strerror}") from exc
            problem = write_problem(directory)
            if problem:
                raise UsageError(f"--feature-cache: cannot write to '{directory}': {problem}")
        self.directory = directory
        self.memory: dict[tuple[str, str, str], ImageData] = {}

    def get(self, key: str | None, precision: str, model: nn.Module, data: ImageData, compute: Callable[[], ImageData]) -> tuple[ImageData, str]:
        """The features and where they came from: computed, memory or disk (a None key: computed every time)."""
        if key is None:
            return compute(), "computed"
        weights = model_digest(model)
        if (key, precision, weights) in self.memory:
            return self.memory[(key, precision, weights)], "memory"
        path = self.directory / f"{fingerprint(key, precision, weights, data)}.pt" if self.directory else None
        features = _load(path, data) if path is not None and path.is_file() else None
        if features is not None:
            origin = "disk"
        else:
            features, origin = compute(), "computed"
            if path is not None:
                _save(path, features)
        self.memory[(key, precision, weights)] = features
        return features, origin


def fingerprint(key: str, precision: str, weights: str, data: ImageData) -> str:
    """A hash of everything the features depend on (`weights`: the model's `model_digest`), down to
    the kernels that computed them and the versions of the code that ran them."""
    import transformers

    import vptbench

    device = data.train.labels.device
    kernels = f"{describe(device)}|tf32={torch.backends.cuda.matmul.allow_tf32}" if device.type == "cuda" else device.type
    versions = f"{torch.__version__}|{transformers.__version__}|{vptbench.__version__}"
    digest = hashlib.sha256(f"{key}|{precision}|{kernels}|{weights}|{versions}|{data.mean}|{data.std}".encode())
    for split in (data.train, data.test, data.validation):
        if split is not None:
            digest.update(split.pixels.cpu().numpy().tobytes())
            digest.update(split.labels.cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


def _save(path: Path, features: ImageData) -> None:
    import io

    buffer = io.BytesIO()
    torch.save({name: getattr(features, name).pixels.cpu() if getattr(features, name) else None for name in ("train", "test", "validation")}, buffer)
    write_atomic(path, buffer.getvalue())


def _load(path: Path, data: ImageData) -> ImageData | None:
    """The saved features, or None when the file is unreadable (then they are computed again)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged cache entry is a miss, not an error
        return None
    device = data.train.labels.device

    def split(name: str, original: ImageSplit) -> ImageSplit:
        return ImageSplit(saved[name].to(device), original.labels)

    validation = data.validation
    return ImageData(split("train", data.train), split("test", data.test), split("validation", validation) if validation is not None else None, data.mean, data.std)
