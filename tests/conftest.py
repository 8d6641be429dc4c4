"""Shared fixtures: tiny CLIP models and image folders saved locally, the Hub switched off."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub reads it at import
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.pop("VPTBENCH_DISABLE_PLUGIN_AUTOLOAD", None)
# runs in this process: a child per `vptbench run` would cost each test seconds of imports; the
# process executor has its own tests (test_faults.py), and the slow tier's subprocess runs use it
os.environ["VPTBENCH_EXECUTOR"] = "inline"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from vptbench.testing import make_image_folder, save_tiny_clip  # noqa: E402

COLORS = ["blue", "green", "red"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("colors"), COLORS, {"train": 20, "test": 10})


def tiny_suite_toml(model_dir: Path, data_dir: Path, experiments: str = "", training: str = "epochs = 3, batch_size = 8") -> str:
    """A registry whose suite `s` runs on a local tiny model and image folder."""
    default = '[suites.s.experiments.E1]\ntuner = "zero-shot"\n[suites.s.experiments.E2]\ntuner = "linear-probe"\n'
    return f"""
default_suite = "s"
[models.tiny]
source = "local"
path = "{model_dir}"
[datasets.colors]
source = "imagefolder"
path = "{data_dir}"
class_names = {COLORS!r}
templates = ["a photo of a {{}}."]
[suites.s]
model = "tiny"
dataset = "colors"
training = {{ {training} }}
{experiments or default}
"""


@pytest.fixture
def tiny_config(tmp_path, tiny_model_dir, image_folder) -> Path:
    path = tmp_path / "benchmark.toml"
    path.write_text(tiny_suite_toml(tiny_model_dir, image_folder))
    return path


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns (exit code, stdout, stderr)."""
    from vptbench.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return invoke
