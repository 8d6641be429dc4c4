"""Outer schema of `benchmark.toml`; tuner params are validated later by each tuner's Config."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model, model_validator
from pydantic.fields import FieldInfo


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored; inf and nan are never numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Ids name files and folders (runs/E1-seed0.json, results/demo-...): no separators, no "..".
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=64)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]


def _not_blank(name: str) -> str:
    if not name.strip():
        raise ValueError("a class name cannot be blank: zero-shot prompts each class by its name")
    return name


ClassName = Annotated[str, AfterValidator(_not_blank)]


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("contains duplicates")
    return values


def check_template(template: str) -> str:
    """A prompt template takes exactly one positional `{}` for the class name."""
    try:
        if template.format("\0").count("\0") != 1:
            raise ValueError
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"template {template!r} must contain exactly one '{{}}' for the class name") from exc
    return template


Template = Annotated[str, AfterValidator(check_template)]


class ModelSpec(Strict):
    """Where a CLIP model comes from: the Hub, a `save_pretrained` folder, or the package."""

    source: Literal["hub", "local", "builtin"]
    id: str | None = Field(None, description="hub id or builtin name")
    path: str | None = Field(None, description="local folder")
    revision: str | None = None
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    @model_validator(mode="after")
    def _locator_matches_source(self) -> ModelSpec:
        _require_locator(self.source, self.id, self.path)
        return self


class DatasetSpec(Strict):
    """A labelled image dataset and the words zero-shot prompts use for its classes."""

    source: Literal["hub", "imagefolder", "builtin"]
    id: str | None = None
    path: str | None = None
    revision: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    validation_split: str | None = Field(
        None, description="use the dataset's own validation split instead of carving one from train"
    )
    image_column: str = "image"
    label_column: str = "label"
    class_names: Annotated[list[ClassName], Field(min_length=2)]
    templates: Annotated[list[Template], Field(min_length=1)] = ["a photo of a {}."]
    intensity_window: tuple[float, float] | None = Field(
        None, description="(low, high) scaled onto 0..255 for images deeper than 8 bits (default: their declared range, or each image's own)"
    )

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        source = "local" if self.source == "imagefolder" else self.source
        _require_locator(source, self.id, self.path)
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names contains duplicates")
        if self.intensity_window and not self.intensity_window[0] < self.intensity_window[1]:
            raise ValueError(f"intensity_window {list(self.intensity_window)} must be [low, high] with low < high")
        return self


def _require_locator(source: str, id_: str | None, path: str | None) -> None:
    if source == "local":
        if not path or id_:
            raise ValueError(f"source '{source}' takes `path` (and no `id`)")
    elif not id_ or path:
        raise ValueError(f"source '{source}' takes `id` (and no `path`)")


class Convergence(Strict):
    """How epochs-to-converge and early stopping are read off validation accuracy."""

    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01
    patience: Annotated[int, Field(ge=1)] | None = None
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class Training(Strict):
    """Harness-owned training settings. An experiment may override those of TrainingOverride; the
    validation split, the evaluation batch and the seeds stay the suite's, alike for every experiment."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 32
    accumulation_steps: Annotated[int, Field(ge=1, description="micro-batches per step (same effective batch, less memory)")] = 1
    eval_batch_size: Annotated[int, Field(ge=1)] = 256
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    precision: PrecisionName = Field("auto", description="auto: bf16 autocast on CUDA (scaled fp16 before Ampere), fp32 elsewhere")
    compile: bool = Field(False, description="torch.compile the model before training")
    eval_every: Annotated[int, Field(ge=1, description="validate every N epochs (and after the last)")] = 1
    timeout: Annotated[float, Field(gt=0, description="seconds a run may take before it is stopped and recorded as timeout (enforced by the process executor)")] | None = None
    seeds: Annotated[list[Seed], Field(min_length=1), AfterValidator(_unique)] = [0]
    convergence: Convergence = Convergence()

    def with_changes(self, **changes: Any) -> Training:
        """These settings with `changes` applied (the command line's, an out-of-memory retry's),
        validated as the registry's own are: no override slips past a bound."""
        return Training.model_validate({**self.model_dump(), **changes})


SUITE_WIDE = ("eval_batch_size", "val_fraction", "seeds")  # alike for every experiment of a suite


def _overridable(field: FieldInfo) -> tuple[Any, Any]:
    """Training's field as an override: the same type and bounds, None when the experiment inherits it."""
    arguments = (field.annotation, *field.metadata)
    bounded = Annotated[arguments] if field.metadata else field.annotation
    return Optional[bounded], Field(None, description=field.description)  # noqa: UP045 - built at runtime: `X | None` needs a type, not an Annotated alias


_OVERRIDABLE: dict[str, Any] = {name: _overridable(field) for name, field in Training.model_fields.items() if name not in SUITE_WIDE}
TrainingOverride = create_model(
    "TrainingOverride",
    __base__=Strict,
    __doc__="The settings of Training an experiment may change; unset fields inherit the suite's.",
    **_OVERRIDABLE,
)


class Reference(Strict):
    """Values a published study reports, shown beside ours."""

    test_accuracy: Annotated[float, Field(ge=0, le=1)] | None = None
    trainable_params: Annotated[int, Field(ge=0)] | None = None
    epochs_to_converge: Annotated[int, Field(ge=0)] | None = None


class Experiment(Strict):
    """One strategy to run: a tuner, its params (checked by the tuner), and overrides."""

    tuner: str
    description: str = ""
    params: dict[str, Any] = {}
    training: TrainingOverride = TrainingOverride()
    reference: Reference | None = None


class Suite(Strict):
    """A model, a dataset, training defaults and the experiments compared on them."""

    description: str = ""
    model: str
    dataset: str
    training: Training = Training()
    experiments: Annotated[dict[Name, Experiment], Field(min_length=1)]

    def training_for(self, experiment_id: str) -> Training:
        """The suite's training settings with the experiment's overrides applied; a partial
        `convergence` table changes only the keys it sets."""
        base = self.training.model_dump()
        override = self.experiments[experiment_id].training.model_dump(exclude_none=True, exclude_unset=True)
        convergence = {**base["convergence"], **override.pop("convergence", {})}
        return Training.model_validate({**base, **override, "convergence": convergence})


class Registry(Strict):
    """The whole `benchmark.toml`."""

    default_suite: str | None = Field(None, description="the suite used without --suite (default: the first declared)")
    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec]
    suites: Annotated[dict[Name, Suite], Field(min_length=1)]

    @model_validator(mode="after")
    def _references_resolve(self) -> Registry:
        if self.default_suite is None:
            self.default_suite = next(iter(self.suites))
        if self.default_suite not in self.suites:
            raise ValueError(f"default_suite '{self.default_suite}' is not a declared suite")
        for name, suite in self.suites.items():
            if suite.model not in self.models:
                raise ValueError(f"suites.{name}.model: '{suite.model}' is not declared under [models]")
            if suite.dataset not in self.datasets:
                raise ValueError(f"suites.{name}.dataset: '{suite.dataset}' is not declared under [datasets]")
        return self
