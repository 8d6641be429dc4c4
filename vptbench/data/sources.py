"""Read a declared dataset's images and labels from the package, an image folder or the Hub."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vptbench.data.store import ImageData, ImageSplit, preprocess
from vptbench.errors import DataError, first_few, folder_missing, load_failure, unknown_name
from vptbench.models import LoadedModel, hub_offline
from vptbench.registry import DatasetSpec

RawSplit = tuple[Sequence[Image.Image], list[int]]


def _sklearn_digits() -> dict[str, RawSplit]:
    """scikit-learn's real handwritten digits; a fixed stratified 30 % test split."""
    from sklearn.model_selection import train_test_split

    from vptbench.demo_model.digits import load_digit_images

    images, labels = load_digit_images()
    idx_train, idx_test = train_test_split(
        list(range(len(labels))), test_size=0.3, stratify=labels, random_state=0
    )
    return {
        "train": ([images[i] for i in idx_train], [labels[i] for i in idx_train]),
        "test": ([images[i] for i in idx_test], [labels[i] for i in idx_test]),
    }


def _synthetic_brain_mri() -> dict[str, RawSplit]:
    """Noise images with the brain-MRI study's split sizes (train 480 / test 320, 4 balanced classes)
    and a faint class-dependent blob: for timing the paper suite where the real data is out of reach."""
    rng = np.random.default_rng(0)
    size = 256
    yy, xx = np.mgrid[:size, :size]

    def split(count: int) -> RawSplit:
        labels = [i % 4 for i in range(count)]
        images = []
        for label in labels:
            cy, cx = (64 + 128 * (label // 2), 64 + 128 * (label % 2))
            blob = 60 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 30**2))
            grey = np.clip(rng.normal(90, 30, (size, size)) + blob, 0, 255).astype(np.uint8)
            images.append(Image.fromarray(grey).convert("RGB"))
        return images, labels

    return {"train": split(480), "test": split(320)}


BUILTIN_DATASETS: dict[str, Callable[[], dict[str, RawSplit]]] = {
    "sklearn-digits": _sklearn_digits,
    "synthetic-brain-mri": _synthetic_brain_mri,
}


def load_images(
    name: str, spec: DatasetSpec, model: LoadedModel, progress=None, trains: Callable[[], bool] = lambda: True,
    window: tuple[float, float] | None = None,
) -> ImageData:  # fmt: skip
    """Load `spec`'s splits and decode them once, at the model's input size. `trains()` says whether
    any run will train, asked only when a split lacks a tested class: then that matters. `window`
    is the value range images deeper than 8 bits are scaled from (`store.to_8bit`; by default each
    mode's declared range, or an I/F image's own min..max); the dataset's `intensity_window` is used
    when `window` is not given."""
    window = window if window is not None else spec.intensity_window
    raw = _read(name, spec)
    declared = {"train": spec.train_split, "test": spec.test_split, "validation": spec.validation_split}
    named = {role: declared[role] or role for role in raw}  # as the dataset names its splits
    for role, (_, labels) in raw.items():  # every split's labels before any image is decoded
        _check_labels(name, spec, named[role], labels)
    tested = {int(label) for label in raw["test"][1]}
    gaps = [gap for role in raw if role != "test" and (gap := _missing_tested_classes(name, spec, named[role], role, raw[role][1], tested))]
    if gaps and trains():
        raise DataError(gaps[0])
    splits = {}
    for role, (images, labels) in raw.items():
        where = f"datasets.{name}: split '{named[role]}'"
        splits[role] = ImageSplit(*preprocess(images, labels, model.image_processor, where, progress, window))
    mean, std = model.mean_std
    return ImageData(
        train=splits["train"], test=splits["test"], validation=splits.get("validation"), mean=mean, std=std
    )


def _read(name: str, spec: DatasetSpec) -> dict[str, RawSplit]:
    if spec.source == "builtin":
        assert spec.id is not None  # DatasetSpec's validator: every source but imagefolder names an id
        if spec.id not in BUILTIN_DATASETS:
            raise DataError(f"datasets.{name}: " + unknown_name("builtin dataset", spec.id, BUILTIN_DATASETS))
        return BUILTIN_DATASETS[spec.id]()
    return _read_hf(name, spec)


def _read_hf(name: str, spec: DatasetSpec) -> dict[str, RawSplit]:
    """Hub datasets and local image folders both go through `datasets.load_dataset`."""
    import datasets

    folder: Path | None  # the image folder's (None for the Hub)
    args: tuple[str | None, ...]
    kwargs: dict[str, str | None]
    if spec.source == "imagefolder":
        assert spec.path is not None  # DatasetSpec's validator: an imagefolder source names a path
        folder = Path(spec.path).expanduser()
        if not folder.is_dir():
            raise DataError(f"datasets.{name}: image folder '{spec.path}' {folder_missing(folder)}")
        args, kwargs = ("imagefolder",), {"data_dir": str(folder)}
    else:
        folder, args, kwargs = None, (spec.id,), {"revision": spec.revision}
    try:
        loaded = datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; all mean "cannot load"
        # a split folder without images reads as `Instruction "test" corresponds to no data!`
        layout = _layout_problem(name, spec, folder) if folder is not None else ""
        raise DataError(layout or _explain(name, spec, exc)) from exc
    wanted = {"train": spec.train_split, "test": spec.test_split}
    if spec.validation_split:
        wanted["validation"] = spec.validation_split
    out: dict[str, RawSplit] = {}
    for role, split in wanted.items():
        if split not in loaded:
            layout = _layout_problem(name, spec, folder) if folder is not None else ""
            raise DataError(layout or f"datasets.{name}: split '{split}' not found; the dataset has {', '.join(loaded)}")
        data = loaded[split]
        for column in (spec.image_column, spec.label_column):
            if column not in data.column_names:
                if folder is not None:
                    _refuse_unlabelled_folders(name, folder)
                hint = " (an image folder labels its images by their subfolders: it needs at least two)" if spec.source == "imagefolder" else ""
                raise DataError(
                    f"datasets.{name}: split '{split}' has no column '{column}'; columns: {', '.join(data.column_names)}{hint}"
                )
        _check_label_names(name, spec, data.features[spec.label_column], folder)
        out[role] = (LazyImages(data, spec.image_column), list(data[spec.label_column]))
    return out


def _is_image(path: Path) -> bool:
    """A file `datasets`' imagefolder reads as an image (by its extension, as imagefolder decides)."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in ImageFolder.EXTENSIONS


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _layout_problem(name: str, spec: DatasetSpec, folder: Path) -> str:
    """The one line naming an image folder that lacks a declared split's folder of images, or "".
    `datasets` answers such a folder with a split that is simply missing or with its own
    `Instruction "test" corresponds to no data!`, neither naming the folder or the layout it needs."""
    splits = [spec.train_split, spec.test_split, *([spec.validation_split] if spec.validation_split else [])]
    layout = " and ".join(f"'{folder / split}/<class>/*.png'" for split in splits)
    for split in splits:
        where = folder / split
        if not where.is_dir():
            entries = [p.name + ("/" if p.is_dir() else "") for p in _visible(folder)]
            holds = f"it holds {first_few(entries)}" if entries else "it is empty"
            return f"datasets.{name}: image folder '{folder}' has no '{split}' folder ({holds}); expected the layout {layout}"
        if not any(_is_image(p) for p in where.rglob("*")):
            files = [str(p.relative_to(where)) for p in sorted(where.rglob("*")) if p.is_file() and not p.name.startswith(".")]
            holds = f"only {first_few(files)}" if files else "nothing"
            return f"datasets.{name}: image folder '{folder}' has no image in its '{split}' folder (it holds {holds}); expected the layout {layout}"
    return ""


def _refuse_unlabelled_folders(name: str, folder: Path) -> None:
    """Images at another depth than `<split>/<class>/<image>` make `datasets` drop every split's
    labels: name the folder at fault, not the first split that lost its labels (a metadata file
    labels loose images)."""
    for split in sorted(p for p in folder.iterdir() if p.is_dir()):
        loose = sorted(p.name for p in split.iterdir() if p.is_file() and not p.name.startswith("."))
        if loose and not any(file.startswith("metadata.") for file in loose):
            raise DataError(
                f"datasets.{name}: '{split}' holds images directly ({first_few(loose)}); "
                "an image folder labels its images by their class subfolders, in every split"
            )
        nested = sorted(str(p.relative_to(split)) for p in split.glob("*/*") if p.is_dir() and not p.name.startswith("."))
        if nested:
            raise DataError(
                f"datasets.{name}: '{split}' has folders inside its class folders ({first_few(nested)}); "
                "an image folder holds each class's images directly in its class folder"
            )


class LazyImages(Sequence):
    """A split's images, decoded one at a time; `describe` names a file for error messages.
    (benchmarks/naive_vs_vptbench.py times vptbench's one decoding pass through it.)"""

    def __init__(self, data, column: str) -> None:
        self.data, self.column = data, column

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        return self.data[index][self.column]

    def describe(self, index: int) -> str:
        import datasets

        try:
            path = self.data.cast_column(self.column, datasets.Image(decode=False))[index][self.column].get("path")
        except Exception:  # noqa: BLE001 - naming the file is best effort
            path = None
        return path or f"#{index}"


def _check_label_names(name: str, spec: DatasetSpec, feature, folder: Path | None) -> None:
    """class_names must follow the label column's order: label i is prompted as class_names[i].

    Names may be friendlier than the column's ("no tumor" for "notumor"), so only a name that
    matches a column name at another position is provably out of order.
    """
    names = getattr(feature, "names", None)
    if names is None:
        return
    if len(names) != len(spec.class_names):
        raise DataError(
            f"datasets.{name}: class_names lists {len(spec.class_names)} classes but the label column has "
            f"{len(names)} ({', '.join(names)}){_class_folders_without_images(folder) + _class_folders_not_everywhere(folder) if folder else ''}"
        )
    position = {_plain(label): index for index, label in enumerate(names)}
    for index, class_name in enumerate(spec.class_names):
        if position.get(_plain(class_name), index) != index:
            raise DataError(
                f"datasets.{name}: class_names must follow the label column's order ({', '.join(names)}); "
                f"'{class_name}' is listed at position {index + 1} but is class {position[_plain(class_name)] + 1} of the label column"
            )


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Each split folder's class folders, by split name."""
    splits = [split for split in _visible(folder) if split.is_dir()]
    return {split.name: [p for p in _visible(split) if p.is_dir()] for split in splits}


def _class_folders_without_images(folder: Path) -> str:
    """A class folder without an image is no class to `datasets`: name such folders, or ""."""
    empty = [f"{split}/{c.name}" for split, classes in sorted(_class_folders(folder).items()) for c in classes if not any(_is_image(p) for p in c.iterdir())]
    return f"; class folders without an image: {first_few(empty)} (a class is a folder holding images)" if empty else ""


def _class_folders_not_everywhere(folder: Path) -> str:
    """An image folder's labels are the union of every split's class folders, so one class spelled
    two ways (`train/cherry`, `test/cherries`) becomes two classes: name such folders, or "".
    Folders without an image are no class (`_class_folders_without_images` names them)."""
    classes = {split: {c.name for c in found if any(_is_image(p) for p in c.iterdir())} for split, found in _class_folders(folder).items()}
    everywhere = set.intersection(*classes.values()) if classes else set()
    odd = [f"{split}/{c}" for split, names in sorted(classes.items()) for c in sorted(names - everywhere)]
    return f"; class folders not in every split: {first_few(odd)} (spell each class's folder the same in every split)" if odd else ""


def _plain(label: str) -> str:
    return "".join(character for character in label.lower() if character.isalnum())


def _check_labels(name: str, spec: DatasetSpec, split: str, labels: list) -> None:
    if not labels:
        raise DataError(f"datasets.{name}: split '{split}' is empty")
    odd = next((label for label in labels if isinstance(label, bool) or not isinstance(label, (int, np.integer))), None)
    if odd is not None:
        raise DataError(
            f"datasets.{name}: split '{split}': label column '{spec.label_column}' holds {type(odd).__name__} values "
            f"such as {odd!r}, not class indices; cast it to a ClassLabel (datasets' class_encode_column)"
        )
    bad = sorted({label for label in labels if not 0 <= label < len(spec.class_names)})
    if bad:
        raise DataError(
            f"datasets.{name}: split '{split}' has labels {bad[:5]} outside 0..{len(spec.class_names) - 1} "
            f"({len(spec.class_names)} class_names declared)"
        )


def _missing_tested_classes(name: str, spec: DatasetSpec, split: str, role: str, labels: list, tested: set[int]) -> str:
    """Why a training run cannot be trusted on these splits, or "". A tested class absent from train
    cannot be learnt, and one absent from validation cannot count in model selection: either would
    bias every number without a sound. Runs that do not train (zero-shot) need neither split. A class
    no split has (a filtered dataset keeps its full ClassLabel) is only an unused logit; the test
    split may lack one too (the report says so)."""
    present = {int(label) for label in labels}
    absent = [class_name for index, class_name in enumerate(spec.class_names) if index in tested - present]
    if not absent:
        return ""
    remedy = "" if role == "train" else "; leave validation_split unset to carve a stratified one from train"
    return f"datasets.{name}: split '{split}' has no image of class {first_few([repr(c) for c in absent])}, which the test split has{remedy}"


def _explain(name: str, spec: DatasetSpec, exc: Exception) -> str:
    remedy = (
        "save it elsewhere as an image folder (train/ and test/ with one subfolder per class) and "
        'declare it with source = "imagefolder" and path = "..."'
    )
    return load_failure(f"datasets.{name}", spec.id or spec.path or "", spec.source == "hub" and hub_offline(), remedy, exc)
