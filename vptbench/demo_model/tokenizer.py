"""A small CLIP BPE tokenizer built locally (the Hub is out of reach, and a 49k vocab would dwarf the model).

Every printable ASCII character (and its word-final `</w>` form) is in the base vocabulary, so any
lowercase ASCII text tokenizes without the unknown token, which CLIPTokenizer aliases to
`<|endoftext|>` and would therefore move EOS pooling. Merges then build each caption word whole.
"""

from __future__ import annotations

import re

from transformers import CLIPTokenizer

from .corpus import CAPTION_TEMPLATES, CLASS_WORDS

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 16
EOW = "</w>"


def caption_words() -> list[str]:
    """Words of the caption templates and class names, in first-seen order (keeps the vocab stable)."""
    text = " ".join(CAPTION_TEMPLATES + CLASS_WORDS)
    return list(dict.fromkeys(re.findall(r"[a-z]+", text)))


def _merges(words: list[str]) -> list[tuple[str, str]]:
    """Left-to-right merges assembling each word, e.g. seven: s+e, se+v, sev+e, seve+n</w>."""
    merges: dict[tuple[str, str], None] = {}
    for word in words:
        symbols = list(word[:-1]) + [word[-1] + EOW]
        while len(symbols) > 1:
            merges[(symbols[0], symbols[1])] = None
            symbols = [symbols[0] + symbols[1]] + symbols[2:]
    return list(merges)


def special_token_ids(tokenizer) -> dict[str, int]:
    """The text config's bos/eos/pad ids, taken from the tokenizer: CLIP's defaults would make EOS
    pooling silently read position 0 with a small vocabulary."""
    return {f"{key}_token_id": getattr(tokenizer, f"{key}_token_id") for key in ("bos", "eos", "pad")}


def build_tokenizer(max_length: int = MAX_LENGTH) -> CLIPTokenizer:
    """Base characters, then one token per merge result, then the two special tokens; `max_length`
    is the text tower's number of positions."""
    chars = [chr(c) for c in range(33, 127)]
    tokens = chars + [c + EOW for c in chars]
    merges = _merges(caption_words())
    tokens += [a + b for a, b in merges if a + b not in tokens]
    tokens += [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)  # type: ignore[arg-type]  # passed on to tokenizers' BPE, which takes (a, b) pairs
