"""Helpers for tests, ours and plugin authors': tiny CLIP models and image folders built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def tiny_clip(image_size: int = 32, patch_size: int = 8, width: int = 64, layers: int = 2, projection_dim: int = 32, seed: int = 0, attn_implementation: str = "sdpa"):
    """A randomly initialised CLIP small enough to train in milliseconds, with a matching tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from vptbench.demo_model.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    ids = {key: tokenizer.convert_tokens_to_ids(getattr(tokenizer, f"{key}_token")) for key in ("bos", "eos", "pad")}
    text = dict(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"],
    )  # fmt: skip
    vision = dict(
        image_size=image_size, patch_size=patch_size, hidden_size=width, intermediate_size=4 * width,
        num_hidden_layers=layers, num_attention_heads=2,
    )  # fmt: skip
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = CLIPModel._from_config(config, attn_implementation=attn_implementation)
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
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
