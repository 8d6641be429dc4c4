"""Libraries' own chatter (download bars, retry warnings) replaced by our bars and errors."""

from __future__ import annotations

import os
import sys
import warnings

# torch's two wordings, matched from the start of the message
NONDETERMINISTIC_WARNING = r".*(defaults to a non-deterministic algorithm|does not have a deterministic implementation)"


def quiet_libraries() -> None:
    """`datasets` is quieted through its environment when it is not loaded yet: built-in data never
    imports it; transformers likewise, so that commands which never load a model never import it."""
    # CUDA's kernels without a deterministic version: the report says so once (markdown.CUDA_NOTE)
    warnings.filterwarnings("ignore", message=NONDETERMINISTIC_WARNING, category=UserWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        transformers = sys.modules["transformers"]
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # its retry warnings would precede our one-line error
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
        sys.modules["datasets"].logging.set_verbosity_error()
