"""What every run of a suite shares, loaded once: the pristine model, decoded data, task, device,
feature store and fingerprints."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vptbench.clip.features import check_distinct_class_features, class_prompts
from vptbench.data import ImageData, load_images, make_splits, normalize
from vptbench.errors import DataError
from vptbench.harness.counting import count_parameters
from vptbench.harness.device import describe, use_device
from vptbench.harness.features import FeatureStore
from vptbench.harness.fingerprints import suite_fingerprints
from vptbench.harness.planning import PlannedExperiment, SuitePlan
from vptbench.models import LoadedModel, load_model
from vptbench.protocol import Task
from vptbench.registry import DatasetSpec


@dataclass
class Workbench:
    model: LoadedModel
    data: ImageData
    task: Task
    device: torch.device
    features: FeatureStore = field(default_factory=FeatureStore)
    fingerprints: dict[str, str] = field(default_factory=dict)  # of model and data, for run.json

    def normalizer(self):
        mean = torch.tensor(self.data.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, device=self.device).view(1, -1, 1, 1)
        return lambda pixels: normalize(pixels.to(self.device), mean, std)


def task_for(dataset: DatasetSpec, model: LoadedModel) -> Task:
    return Task(list(dataset.class_names), list(dataset.templates), model.tokenizer)


def prepare(plan: SuitePlan, device_name: str, progress=None, feature_cache: Path | None = None, data_on_device: bool = True) -> Workbench:
    """Load the model once and decode the dataset once, for every run of the suite; the data goes
    to the device unless the runs happen elsewhere (Ray workers move it to their own)."""
    device = use_device(device_name)
    model = load_model(plan.model_name, plan.model)
    try:  # before minutes of decoding: every class prompt must fit the text tower
        class_prompts(model.tokenizer, plan.dataset.class_names, plan.dataset.templates)
    except DataError as exc:
        raise DataError(f"datasets.{plan.dataset_name}: {exc}") from exc
    check_distinct_class_features(model, plan.dataset.class_names, plan.dataset.templates)
    task = task_for(plan.dataset, model)
    trains_any = functools.cache(lambda: any(trains(e, model, task) for e in plan.experiments))  # asked only when it matters
    data = load_images(plan.dataset_name, plan.dataset, model, progress, trains_any)
    if plan.experiments:  # a split that cannot be made fails now, not once per run
        try:
            make_splits(data, plan.experiments[0].training.val_fraction, plan.seeds[0], plan.dataset.class_names)
        except DataError as exc:
            if trains_any():
                raise DataError(f"datasets.{plan.dataset_name}: {exc}") from exc
    try:
        on_device = data.to(device if data_on_device else torch.device("cpu"))
    except torch.cuda.OutOfMemoryError as exc:
        size = sum(s.pixels.nbytes for s in (data.train, data.test, data.validation) if s is not None) / 2**30
        raise DataError(f"datasets.{plan.dataset_name}: the decoded images ({size:.1f} GiB as uint8) do not fit in {describe(device)} memory") from exc
    return Workbench(model, on_device, task, device, FeatureStore(feature_cache), suite_fingerprints(model, data))


def trains(experiment: PlannedExperiment, model: LoadedModel, task: Task) -> bool:
    """Whether the experiment's tuner has parameters to train; one that cannot be built fails its
    own run with its own error."""
    if experiment.tuner is None:
        return False
    try:
        tuner, _ = experiment.build(model.clip, task)
    except Exception:  # noqa: BLE001 - reported when the run builds it
        return False
    return count_parameters(tuner)[0] > 0
