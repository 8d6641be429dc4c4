"""Load a CLIP model, its tokenizer and image processor from the Hub, a folder or the package."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vptbench.errors import ModelError, first_few, first_line, folder_missing, load_failure, unknown_name
from vptbench.registry import ModelSpec

if TYPE_CHECKING:  # transformers is imported where a model is loaded, not to list or plan
    from transformers import CLIPImageProcessorPil, CLIPModel, PreTrainedTokenizerBase

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_CLIP = ASSETS / "demo-clip"
CLIP_TEXT_POSITIONS = 77  # every released CLIP's text length


@dataclass
class LoadedModel:
    clip: CLIPModel
    tokenizer: PreTrainedTokenizerBase
    image_processor: CLIPImageProcessorPil
    name: str
    # transformers' warnings (and Python warnings) while loading, each once, for the caller to show:
    # the CLI sets transformers' verbosity to error, which would drop them (`_library_warnings`)
    warnings: list[str] = field(default_factory=list)

    @property
    def mean_std(self) -> tuple[list[float], list[float]]:
        return list(self.image_processor.image_mean), list(self.image_processor.image_std)


def load_model(name: str, spec: ModelSpec) -> LoadedModel:
    """Resolve `spec` and load all three parts, with one-line errors."""
    if spec.source == "builtin":
        assert spec.id is not None  # ModelSpec's validator: every source but local names an id
        if spec.id not in BUILTIN_MODELS:
            raise ModelError(f"models.{name}: " + unknown_name("builtin model", spec.id, BUILTIN_MODELS))
        return BUILTIN_MODELS[spec.id](name, spec)
    if spec.source == "local":
        assert spec.path is not None  # ModelSpec's validator: a local source names a path
        path = Path(spec.path).expanduser()
        if not path.is_dir():
            raise ModelError(f"models.{name}: local model folder '{spec.path}' {folder_missing(path)}")
        if not (path / "config.json").is_file():
            raise ModelError(f"models.{name}: local model folder '{spec.path}' has no config.json; save the model there with save_pretrained")
        return _load_pretrained(name, str(path), None, spec)
    assert spec.id is not None  # ModelSpec's validator: every source but local names an id
    return _load_pretrained(name, spec.id, spec.revision, spec)


def _load_pretrained(name: str, location: str, revision: str | None, spec: ModelSpec) -> LoadedModel:
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from vptbench.clip.text import text_config
    from vptbench.clip.vision import image_size

    found: list[str] = []
    try:  # the PIL processor on every machine: torchvision's resize would change the pixels
        model_type = CLIPConfig.get_config_dict(location, revision=revision)[0].get("model_type", "clip")
        if model_type != "clip":  # CLIPModel would load it with a warning and random weights
            raise ModelError(f"models.{name}: '{location}' holds a '{model_type}' model, not CLIP")
        with _library_warnings(found):
            # with output_loading_info, a (model, info) pair: transformers' annotation says the model alone
            clip, loading = cast("tuple[CLIPModel, dict[str, Any]]", CLIPModel.from_pretrained(
                location,
                revision=revision,  # type: ignore[arg-type]  # None is the default branch; transformers' annotation omits it
                attn_implementation=spec.attn_implementation,
                ignore_mismatched_sizes=True,  # reported below in one line, with the rest
                output_loading_info=True,
            ))
            tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
            processor = CLIPImageProcessorPil.from_pretrained(location, revision=revision)  # type: ignore[arg-type]  # as above
    except ModelError:
        raise
    except Exception as exc:  # the files are the user's: a truncated checkpoint, bad JSON, the Hub offline
        raise ModelError(_damaged_weights(name, location) or _explain_load_failure(name, location, spec, exc)) from exc
    _refuse_incomplete_weights(name, location, loading)
    _refuse_mismatched_processor(name, location, processor, image_size(clip))
    positions = text_config(clip).max_position_embeddings
    if tokenizer.model_max_length > positions:  # saved without a limit: the text tower's is the real one
        tokenizer.model_max_length = positions
    vocab = tokenizer.get_vocab()
    if set(vocab.values()) <= set(tokenizer.all_special_ids):
        raise ModelError(
            f"models.{name}: tokenizer of '{location}' has only its {len(vocab)} special tokens "
            "(an offline stub, or a folder saved without the tokenizer's files); "
            "point `path` at a local copy saved with save_pretrained"
        )
    _refuse_mismatched_tokenizer(name, location, text_config(clip), tokenizer)
    return LoadedModel(clip=clip, tokenizer=tokenizer, image_processor=processor, name=name, warnings=found)


@contextmanager
def _library_warnings(found: list[str]) -> Iterator[None]:
    """Collect, each once and in order, what transformers warns about while loading (through its
    logger, at WARNING even when its verbosity is error, as the CLI sets it) and Python warnings
    raised meanwhile (the filters in force still apply). Kept in `found` instead of printed: the
    caller shows them (`LoadedModel.warnings`). Other records reach transformers' handlers as before."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    library = hf_logging.get_logger()  # the "transformers" logger all of its modules' loggers feed
    level, handlers = library.level, list(library.handlers)
    shown = library.getEffectiveLevel()

    def unkept(record: logging.LogRecord) -> bool:  # what the library's own handlers would have shown
        return record.levelno >= shown and record.levelno != logging.WARNING

    keep = Keep(logging.WARNING)
    keep.addFilter(lambda record: record.levelno == logging.WARNING)
    for handler in handlers:
        handler.addFilter(unkept)
    library.addHandler(keep)
    library.setLevel(min(shown, logging.WARNING))
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        library.setLevel(level)
        library.removeHandler(keep)
        for handler in handlers:
            handler.removeFilter(unkept)
        found.extend(str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning))
        found[:] = list(dict.fromkeys(found))


def _refuse_mismatched_tokenizer(name: str, location: str, text_config, tokenizer) -> None:
    """A config whose bos/eos/pad ids disagree with the tokenizer loads with only a warning, and the
    text tower then pools the wrong token of every prompt: all classes can get the same features
    (a small tokenizer left with CLIP's default eos_token_id 49407 does exactly that)."""
    size, vocab_size = len(tokenizer), text_config.vocab_size
    where = f"models.{name}: '{location}'"
    if size > vocab_size:
        raise ModelError(f"{where}: the tokenizer has {size} tokens but the text tower's vocab_size is {vocab_size}; tokens past it have no embedding")
    for key in ("bos", "eos", "pad"):
        value = getattr(text_config, f"{key}_token_id", None)
        if value is not None and not 0 <= value < size:
            raise ModelError(
                f"{where}: text_config.{key}_token_id {value} is outside the tokenizer's {size} tokens (0..{size - 1}); "
                f"set it to the tokenizer's ({getattr(tokenizer, f'{key}_token_id', None)}) in config.json"
            )
    eos, end = text_config.eos_token_id, getattr(tokenizer, "eos_token_id", None)
    if eos != 2 and end is not None and eos != end:  # 2: a legacy config, pooled at the largest id instead
        raise ModelError(
            f"{where}: text_config.eos_token_id {eos} is not the tokenizer's end token {tokenizer.eos_token!r} ({end}), "
            "so the text tower would pool the wrong token of every prompt; set it in config.json"
        )


def _damaged_weights(name: str, location: str) -> str:
    """The message naming an unreadable weights file of a local folder (a copy cut short, say), or "".
    Only the files transformers loads: a damaged adapter beside them is not why loading failed."""
    from safetensors import safe_open

    folder = Path(location)
    for file in sorted([*folder.glob("model.safetensors"), *folder.glob("model-*-of-*.safetensors")]):
        try:
            with safe_open(file, "pt"):
                pass
        except Exception as exc:  # noqa: BLE001 - whatever safetensors objects to, the file is at fault
            return f"models.{name}: weights file '{file}' is damaged or truncated ({first_line(exc)}); save the model there again"
    return ""


def _refuse_incomplete_weights(name: str, location: str, loading: dict) -> None:
    """transformers initialises missing or misshapen weights at random with only a warning: a model that is not the one asked for."""
    missing = sorted(loading["missing_keys"])
    if missing:
        raise ModelError(
            f"models.{name}: checkpoint of '{location}' lacks {len(missing)} of the model's weights "
            f"({first_few(missing)}); they would be random"
        )
    mismatched = sorted(loading["mismatched_keys"])
    if mismatched:
        shown = [f"{key} {tuple(saved)} vs {tuple(expected)}" for key, saved, expected in mismatched]
        raise ModelError(f"models.{name}: checkpoint of '{location}' has weights of the wrong shape for its config: {first_few(shown)}")


def _refuse_mismatched_processor(name: str, location: str, processor, image_size: int) -> None:
    """Caught here, not at the first forward pass after every image has been decoded."""
    from PIL import Image

    probe = Image.new("RGB", (48, 24))  # not square: a processor that does not crop shows it
    height, width = processor(probe, return_tensors="np")["pixel_values"].shape[-2:]
    if (height, width) != (image_size, image_size):
        raise ModelError(
            f"models.{name}: the image processor of '{location}' turns a 48×24 image into {width}×{height}, "
            f"but the vision tower takes {image_size}×{image_size}; fix preprocessor_config.json"
        )


def _demo_clip(name: str, spec: ModelSpec) -> LoadedModel:
    if not DEMO_CLIP.is_dir():
        raise ModelError(f"models.{name}: the demo model's files are missing from {DEMO_CLIP}; reinstall vptbench")
    return _load_pretrained(name, str(DEMO_CLIP), None, spec)


def _vit_b16_random(name: str, spec: ModelSpec) -> LoadedModel:
    """CLIP ViT-B/16's exact geometry with random weights: dry runs, parameter counts, throughput."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from vptbench.demo_model.tokenizer import build_tokenizer, special_token_ids

    tokenizer = build_tokenizer(max_length=CLIP_TEXT_POSITIONS)
    config = CLIPConfig(
        text_config={**special_token_ids(tokenizer), "max_position_embeddings": CLIP_TEXT_POSITIONS},
        vision_config={"patch_size": 16},
        projection_dim=512,
    )
    with torch.random.fork_rng(devices=[]):  # the same weights every time: a resumed run goes on with them
        torch.manual_seed(0)
        clip = CLIPModel._from_config(config, attn_implementation=spec.attn_implementation)
    return LoadedModel(clip=clip, tokenizer=tokenizer, image_processor=CLIPImageProcessorPil(), name=name)


BUILTIN_MODELS: dict[str, Callable[[str, ModelSpec], LoadedModel]] = {
    "demo-clip": _demo_clip,
    "vit-b16-random": _vit_b16_random,
}


def _explain_load_failure(name: str, location: str, spec: ModelSpec, exc: Exception) -> str:
    remedy = 'download it elsewhere with save_pretrained and declare it with source = "local" and path = "..."'
    return load_failure(f"models.{name}", location, spec.source == "hub" and hub_offline(), remedy, exc)


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
