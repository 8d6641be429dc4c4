"""Outer schema of `benchmark.toml`; tuner params are validated later by each tuner's Config."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError


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


def unique(values: list) -> list:
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
    momentum: Annotated[float, Field(ge=0, lt=1, description="SGD's momentum (sgd only)")] = 0.9
    epochs: Annotated[int, Field(ge=1)] = 10
    schedule: Literal["constant", "cosine", "step"] = Field("constant", description="the lr after warm-up: constant, cosine decay to 0, or step decay")
    warmup_epochs: Annotated[int, Field(ge=0, description="epochs of linear warm-up from lr/steps to lr, stepped per optimiser step")] = 0
    step_epochs: Annotated[int, Field(ge=1, description="schedule 'step': multiply the lr by step_gamma every N epochs")] | None = None
    step_gamma: Annotated[float, Field(gt=0, le=1, description="schedule 'step': the factor of each step")] = 0.1
    batch_size: Annotated[int, Field(ge=1)] = 32
    accumulation_steps: Annotated[int, Field(ge=1, description="micro-batches per step (same effective batch, less memory)")] = 1
    label_smoothing: Annotated[float, Field(ge=0, lt=1, description="of the training loss only; validation and test losses stay plain cross-entropy")] = 0.0
    augment: bool = Field(False, description="random resized crop and horizontal flip of training images (no cached features then)")
    eval_batch_size: Annotated[int, Field(ge=1)] = 256
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    precision: PrecisionName = Field("auto", description="auto: bf16 autocast on CUDA (scaled fp16 before Ampere), fp32 elsewhere")
    compile: bool = Field(False, description="torch.compile the model before training")
    eval_every: Annotated[int, Field(ge=1, description="validate every N epochs (and after the last)")] = 1
    refit: bool = Field(False, description="after selecting the epoch on validation, train a fresh tuner on train + validation for that many epochs and test it")
    timeout: Annotated[float, Field(gt=0, description="seconds a run may take before it is stopped and recorded as timeout (enforced by the process executor)")] | None = None
    seeds: Annotated[list[Seed], Field(min_length=1), AfterValidator(unique)] = [0]
    convergence: Convergence = Convergence()

    @model_validator(mode="after")
    def _recipe_is_consistent(self) -> Training:
        if self.optimizer != "sgd" and self.momentum != Training.model_fields["momentum"].default:
            raise ValueError(f"momentum applies to sgd only, not {self.optimizer}")
        if self.schedule == "step" and self.step_epochs is None:
            raise ValueError("schedule 'step' needs step_epochs")
        if self.schedule != "step" and self.step_epochs is not None:
            raise ValueError(f"step_epochs applies to schedule 'step' only, not '{self.schedule}'")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        return self

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


Scalar = Union[bool, int, float, str]  # noqa: UP007 - pydantic's smart union keeps TOML's own type


class Range(Strict):
    """Numbers from `low` to `high` (integers when both are); `log` samples on a log scale."""

    low: int | float
    high: int | float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if isinstance(self.low, bool) or isinstance(self.high, bool):
            raise ValueError("a range takes numbers, not true/false")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range must stay above 0 (low is {self.low:g})")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def values(self) -> list[int]:
        """Every point of an integer range: what a grid runs."""
        return list(range(int(self.low), int(self.high) + 1))


def _one_type(values: list) -> list:
    """A categorical list holds one kind of value (integers and decimals count as numbers alike)."""
    kinds = {"number" if type(v) in (int, float) else type(v).__name__ for v in values}
    if len(kinds) > 1:
        names = {"bool": "true/false", "str": "text", "number": "numbers"}
        raise ValueError(f"a list of choices mixes {' and '.join(sorted(names[k] for k in kinds))}")
    return values


Choices = Annotated[list[Scalar], Field(min_length=1), AfterValidator(unique), AfterValidator(_one_type)]


def _kind(value: Any) -> str | None:
    """Which kind of dimension a value is written as: a table is a range, a list holds choices."""
    return "range" if isinstance(value, (dict, Range)) else "choices" if isinstance(value, list) else None


def _at_dimension(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A dimension's first problem at the dimension's own TOML path (or a range key's, or a
    choice's index) without the union's inner names (`range`, `choices`, `int`)."""
    try:
        return handler(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        kind, *loc = error["loc"] or ("",)
        message = error["msg"]
        if len(loc) > 1:  # a value none of a union's types accepts: a range's bound, a choice
            message = "Input should be a number" if kind == "range" else "Input should be true/false, a number or text"
        detail = InitErrorDetails(type=PydanticCustomError(error["type"], "{message}", {"message": message}), loc=tuple(loc[:1]), input=error["input"])
        raise ValidationError.from_exception_data("Dimension", [detail]) from None


Dimension = Annotated[
    Union[Annotated[Range, Tag("range")], Annotated[Choices, Tag("choices")]],  # noqa: UP007
    Discriminator(_kind, custom_error_type="dimension", custom_error_message="a dimension is a list of choices or a range table (low, high and optionally log)"),
    WrapValidator(_at_dimension),
]

# Settings that do not change what is learned (or are a table of their own) are not searched.
NOT_SEARCHED = (*SUITE_WIDE, "timeout", "compile", "precision", "eval_every", "accumulation_steps", "convergence", "refit")
SEARCHABLE = [name for name in Training.model_fields if name not in NOT_SEARCHED]

class Space(Strict):
    """Dimensions over training settings (by name), and over the tuner's params under `params`."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, Dimension] = Field(init=False)
    params: dict[str, Dimension] = {}

    @model_validator(mode="after")
    def _settings_searchable(self) -> Space:
        if unknown := [name for name in self.training() if name not in SEARCHABLE]:  # said at the culprit's own path
            close = difflib.get_close_matches(unknown[0], SEARCHABLE, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            message = f"not a training setting a search can tune ({hint}those are {', '.join(SEARCHABLE)}; tuner params go under `params`)"
            detail = InitErrorDetails(type=PydanticCustomError("not_searchable", "{message}", {"message": message}), loc=(unknown[0],), input=self.training()[unknown[0]])
            raise ValidationError.from_exception_data("Space", [detail])
        return self

    def training(self) -> dict[str, Dimension]:
        return dict(self.__pydantic_extra__ or {})


class Search(Strict):
    """A search table as declared: unset keys inherit (from the suite, then the defaults)."""

    trials: Annotated[int, Field(ge=1, description="trials per strategy")] | None = None
    sampler: Literal["tpe", "random", "grid"] | None = None
    pruner: Literal["none", "median", "hyperband"] | None = None
    final_seeds: Annotated[list[Seed], Field(min_length=1), AfterValidator(unique)] | None = None
    parallel: Annotated[int, Field(ge=1, description="trials asked at once; they run side by side on Ray")] | None = None
    seed: Seed | None = Field(None, description="the sampler's seed")
    space: Space = Space()


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
    search: Search | None = Field(None, description="this experiment's search: its keys over the suite's")
    reference: Reference | None = None


class Suite(Strict):
    """A model, a dataset, training defaults and the experiments compared on them."""

    description: str = ""
    model: str
    dataset: str
    training: Training = Training()
    search: Search | None = Field(None, description="tune every experiment on validation before its final runs")
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
