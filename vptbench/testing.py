"""Helpers for tests, ours and plugin authors': tiny CLIP models and image folders built offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def tiny_clip(image_size: int = 32, patch_size: int = 8, width: int = 64, layers: int = 2, projection_dim: int = 32, seed: int = 0, attn_implementation: str = "sdpa"):
    """A randomly initialised CLIP small enough to train in milliseconds, with a matching tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from vptbench.demo_model.tokenizer import build_tokenizer, special_token_ids

    tokenizer = build_tokenizer()
    text = dict(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
        **special_token_ids(tokenizer),
    )  # fmt: skip
    vision = dict(
        image_size=image_size, patch_size=patch_size, hidden_size=width, intermediate_size=4 * width,
        num_hidden_layers=layers, num_attention_heads=2,
    )  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = CLIPModel._from_config(config, attn_implementation=attn_implementation)
    processor = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return model, tokenizer, processor


def save_tiny_clip(path: Path, **kwargs) -> Path:
    """`save_pretrained` a tiny CLIP, tokenizer and processor into `path`, as a Hub download would be."""
    model, tokenizer, processor = tiny_clip(**kwargs)
    for part in (model, tokenizer, processor):
        part.save_pretrained(path)
    return path


def make_image_folder(root: Path, class_names: list[str], per_class: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """An `imagefolder` dataset (`<split>/<class>/<n>.png`) whose classes differ in colour, with noise."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(class_names):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.zeros(3)
            base[label % 3] = 200 if label < 3 else 120
            for index in range(count):
                pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


class TunerCheckError(AssertionError):
    """A tuner breaks the contract the harness relies on."""


class FeatureCachingWarning(UserWarning):
    """A tuner has `encode` and `classify` but does not say whether the harness should cache features."""


def _contract(check, *args):
    """One of `vptbench.contract`'s checks, its `ContractError` raised as a `TunerCheckError` with the same message."""
    from vptbench.contract import ContractError

    try:
        return check(*args)
    except ContractError as exc:
        raise TunerCheckError(str(exc)) from exc


def check_tuner(tuner_cls: type[Any], params: dict | None = None, seed: int = 0) -> dict:
    """Check a tuner class against the harness's contract on a tiny CLIP; plugin test suites call this.

    Verifies: the protocol's members; a Config that rejects unknown keys; logits of shape
    (batch, classes); an optimiser step changing trainable parameters and nothing frozen; counted parameters; identical results under a seed; and,
    for feature tuners (`caches_features = True`), a frozen `encode` with `forward == classify(encode)`
    and a `feature_key()`, when it has one, that is a str and the same for two builds of one config.
    The checks `vptbench run` makes too are `vptbench.contract`'s, with the same messages.
    Warns (`FeatureCachingWarning`) about a tuner with `encode` and `classify` that does not say
    whether it caches features. Returns the trainable and total parameter counts.
    """
    import warnings

    import torch
    from pydantic import ValidationError

    from vptbench import contract
    from vptbench.errors import ConfigError
    from vptbench.harness.counting import count_parameters
    from vptbench.protocol import Task, protocol_problems
    from vptbench.registry.params import validate_params

    problems = protocol_problems(tuner_cls)
    if problems:
        raise TunerCheckError(f"{tuner_cls!r} " + "; ".join(problems))
    if contract.undeclared_feature_methods(tuner_cls):
        warnings.warn(
            f"{tuner_cls.__name__} has encode and classify but no caches_features: the harness runs forward every step; "
            "set caches_features = True to have encode computed once and its features cached, or False to say it should not",
            FeatureCachingWarning,
            stacklevel=2,
        )
    params = params or {}
    try:
        tuner_cls.Config(**params, __vptbench_unknown_key__=1)
    except ValidationError:
        pass
    else:
        raise TunerCheckError(f"{tuner_cls.__name__}.Config accepts unknown keys: set model_config extra='forbid' (subclass vptbench.protocol.TunerConfig)")
    try:  # as `vptbench run` validates a params table
        config = validate_params(tuner_cls.Config, params, Path(tuner_cls.__name__), "params")
    except ConfigError as exc:
        raise TunerCheckError(str(exc)) from exc

    def step() -> tuple:
        torch.manual_seed(seed)
        clip, tokenizer, _ = tiny_clip(seed=seed)
        task = Task(["one", "two", "three"], ["a photo of the digit {}."], tokenizer)
        tuner = tuner_cls(config, clip.requires_grad_(False), task)
        pixels, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
        before = {n: p.detach().clone() for n, p in tuner.named_parameters()}
        trainable = [p for p in tuner.parameters() if p.requires_grad]
        tuner.train()
        logits = tuner(pixels)
        _contract(contract.check_logits_shape, tuner, logits, 4, 3)
        if trainable:
            torch.nn.functional.cross_entropy(logits, labels).backward()
            torch.optim.SGD(trainable, lr=0.1).step()
        return tuner, before, pixels, clip

    tuner, before, pixels, clip = step()
    declared = {n for n, p in tuner.named_parameters() if p.requires_grad}
    changed = {n for n, p in tuner.named_parameters() if not torch.equal(p.detach(), before[n])}
    if changed - declared:
        raise TunerCheckError(f"frozen parameters changed: {', '.join(sorted(changed - declared)[:5])}")
    if declared and not changed:
        raise TunerCheckError("a training step changed none of the trainable parameters: are they used in forward?")
    tuner.eval()
    with torch.no_grad():
        logits = tuner(pixels)
    if contract.caches_features(tuner):
        _contract(contract.check_encode_then_classify, tuner, pixels, logits)
        _contract(contract.check_frozen_encoder, tuner, pixels)
        key = _contract(contract.feature_key, tuner, config, clip)
    again, _, _, again_clip = step()
    with torch.no_grad():
        if not torch.equal(again.eval()(pixels), logits):
            raise TunerCheckError("two runs under the same seed gave different outputs")
    if contract.caches_features(tuner) and _contract(contract.feature_key, again, config, again_clip) != key:
        raise TunerCheckError(f"{tuner_cls.__name__}.feature_key() differs between two builds of one config and seed: its features would never be shared")
    trainable, total = count_parameters(tuner)
    return {"trainable_params": trainable, "total_params": total}
