"""The benchmark registry: models, datasets and suites declared in TOML."""

from vptbench.registry.load import default_config_path, load_registry
from vptbench.registry.schema import (
    Convergence,
    DatasetSpec,
    Experiment,
    ModelSpec,
    PrecisionName,
    Reference,
    Registry,
    Suite,
    Training,
)

__all__ = [
    "Convergence",
    "DatasetSpec",
    "Experiment",
    "ModelSpec",
    "PrecisionName",
    "Reference",
    "Registry",
    "Suite",
    "Training",
    "default_config_path",
    "load_registry",
]
