"""What the model receives from images of every depth, one-line errors for image folders laid out
wrongly, and models whose text tower cannot tell the classes apart (issue #22)."""

from __future__ import annotations

import json
import logging

import datasets
import numpy as np
import pytest
from conftest import tiny_suite_toml
from PIL import Image

from vptbench.clip.features import check_distinct_class_features
from vptbench.data import load_images
from vptbench.data.store import preprocess
from vptbench.errors import DataError, ModelError
from vptbench.models import LoadedModel, load_model
from vptbench.registry import DatasetSpec, ModelSpec
from vptbench.testing import make_image_folder, save_tiny_clip, tiny_clip

SIZE = 32  # the tiny model's input size: the processor leaves a 32×32 image's pixels as they are


@pytest.fixture(scope="module")
def tiny():
    clip, tokenizer, processor = tiny_clip()
    return LoadedModel(clip=clip, tokenizer=tokenizer, image_processor=processor, name="tiny")


def _bands(values, dtype) -> np.ndarray:
    """A SIZE×SIZE array of vertical bands, one per value (or per colour tuple)."""
    values = np.asarray(values, dtype=dtype)
    columns = np.repeat(np.arange(len(values)), -(-SIZE // len(values)))[:SIZE]
    return np.broadcast_to(values[columns][None], (SIZE, SIZE, *values.shape[1:])).copy()


def _band_pixels(pixels, count: int) -> list[list[int]]:
    """The RGB value at the middle of each of `count` bands of the first image."""
    width = -(-SIZE // count)
    return [pixels[0, :, SIZE // 2, band * width + width // 2].tolist() for band in range(count)]


def _palette_image():
    image = Image.fromarray(_bands([0, 1], np.uint8), mode="L").convert("P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    return image


def _cmyk_image():
    return Image.fromarray(_bands([(10, 20, 30, 40), (0, 0, 0, 0)], np.uint8), mode="CMYK")


# (PIL mode, image, the RGB value of each band the model receives)
MODES = [
    ("1", lambda: Image.fromarray(_bands([False, True], bool)), [[0] * 3, [255] * 3]),
    ("L", lambda: Image.fromarray(_bands([7, 200], np.uint8)), [[7] * 3, [200] * 3]),
    # declared range 0..65535: 25700 = 100 × 257
    ("I;16", lambda: Image.fromarray(_bands([0, 25700, 65535], np.uint16)), [[0] * 3, [100] * 3, [255] * 3]),
    # no declared range: the image's own min..max; 600 is 1600/4000 of the way, 102 of 255
    ("I", lambda: Image.fromarray(_bands([-1000, 600, 3000], np.int32)), [[0] * 3, [102] * 3, [255] * 3]),
    ("F", lambda: Image.fromarray(_bands([0.25, 0.45, 0.75], np.float32)), [[0] * 3, [102] * 3, [255] * 3]),
    ("RGBA", lambda: Image.fromarray(_bands([(10, 20, 30, 128), (200, 100, 50, 0)], np.uint8)), [[10, 20, 30], [200, 100, 50]]),
    # PIL's CMYK conversion: r = (255 - c)(255 - k) / 255
    ("CMYK", _cmyk_image, [[207, 198, 190], [255, 255, 255]]),
    ("P", _palette_image, [[255, 0, 0], [0, 0, 255]]),
]


@pytest.mark.parametrize(("mode", "make", "expected"), MODES, ids=[m[0] for m in MODES])
def test_pixels_the_model_receives_for_each_pil_mode(tiny, mode, make, expected):
    image = make()
    assert image.mode == mode
    pixels, _ = preprocess([image], [0], tiny.image_processor, "t")
    assert _band_pixels(pixels, len(expected)) == expected


def test_sixteen_bit_png_from_disk_is_scaled_not_clipped(tmp_path, tiny):
    """The issue's repro: a random I;16 PNG became 99.5 % white."""
    values = np.random.default_rng(0).integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "x.png")
    image = Image.open(tmp_path / "x.png")
    assert image.mode == "I;16"
    pixels, _ = preprocess([image], [0], tiny.image_processor, "t")
    assert (pixels[0] == pixels[0, :1]).all()  # grey
    assert pixels[0, 0].tolist() == np.rint(values / 257).astype(int).tolist()
    assert (pixels == 255).float().mean() < 0.01


def test_a_chosen_window_scales_deep_images(tiny):
    """12-bit data in a 16-bit container: a window of 0..4095 uses the whole 8-bit range."""
    image = Image.fromarray(_bands([0, 2048, 4095, 5000], np.uint16))
    pixels, _ = preprocess([image], [0], tiny.image_processor, "t", window=(0, 4095))
    assert _band_pixels(pixels, 4) == [[0] * 3, [128] * 3, [255] * 3, [255] * 3]


def test_float_image_with_nan_is_refused_by_name(tiny):
    image = Image.fromarray(_bands([0.0, np.nan], np.float32))
    with pytest.raises(DataError, match=r"t: 1 of 1 images cannot be decoded \(0\): F image has NaN or infinite pixel values"):
        preprocess([image], [0], tiny.image_processor, "t")


def _sixteen_bit_values(label: int) -> np.ndarray:
    return _bands([label * 30000, 65535], np.uint16)


def test_sixteen_bit_images_through_an_image_folder(tmp_path, tiny):
    for split in ("train", "test"):
        for label, name in enumerate(("a", "b")):
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(_sixteen_bit_values(label)).save(tmp_path / split / name / "0.png")
    spec = DatasetSpec(source="imagefolder", path=str(tmp_path), class_names=["a", "b"])
    data = load_images("d", spec, tiny)
    for index, label in enumerate(data.test.labels.tolist()):
        assert _band_pixels(data.test.pixels[index : index + 1], 2) == [[round(label * 30000 / 257)] * 3, [255] * 3]
    windowed = load_images("d", spec.model_copy(update={"intensity_window": (0, 60000)}), tiny)  # as the registry declares it
    for index, label in enumerate(windowed.test.labels.tolist()):
        assert _band_pixels(windowed.test.pixels[index : index + 1], 2) == [[round(label * 30000 / 60000 * 255)] * 3, [255] * 3]


def test_sixteen_bit_images_through_a_hub_dataset(tmp_path, tiny):
    """A Hub dataset hands `datasets`' decoded PIL images, not files."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    for split in ("train", "test"):
        images = [Image.fromarray(_sixteen_bit_values(label)) for label in (0, 1, 0, 1)]
        table = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0, 1]}, features=features)
        (tmp_path / "data").mkdir(exist_ok=True)
        table.to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    spec = DatasetSpec(source="hub", id=str(tmp_path), class_names=["a", "b"])
    data = load_images("d", spec, tiny)
    assert _band_pixels(data.test.pixels[1:2], 2) == [[round(30000 / 257)] * 3, [255] * 3]


# --- image folders laid out wrongly: one line naming the folder


def test_empty_class_folder_is_named(tmp_path, tiny):
    root = make_image_folder(tmp_path / "d", ["a", "b", "c"], {"train": 2, "test": 2})
    for split in ("train", "test"):
        (root / split / "d").mkdir()
    spec = DatasetSpec(source="imagefolder", path=str(root), class_names=["a", "b", "c", "d"])
    with pytest.raises(DataError) as raised:
        load_images("d", spec, tiny)
    assert str(raised.value) == (
        "datasets.d: class_names lists 4 classes but the label column has 3 (a, b, c); "
        "class folders without an image: test/d, train/d (a class is a folder holding images)"
    )


def test_folder_without_split_folders_names_the_layout(tmp_path, tiny):
    root = make_image_folder(tmp_path / "d", ["a", "b"], {"train": 2})
    (root / "train").rename(root / "images")
    spec = DatasetSpec(source="imagefolder", path=str(root), class_names=["a", "b"])
    with pytest.raises(DataError) as raised:
        load_images("d", spec, tiny)
    assert str(raised.value) == (
        f"datasets.d: image folder '{root}' has no 'train' folder (it holds images/); "
        f"expected the layout '{root}/train/<class>/*.png' and '{root}/test/<class>/*.png'"
    )


@pytest.mark.parametrize("stray", ["test.csv", "test/a/scan.dcm"])
def test_folder_whose_test_split_has_no_image_names_the_layout(tmp_path, tiny, stray):
    """`datasets` itself says `Instruction "test" corresponds to no data!`."""
    root = make_image_folder(tmp_path / "d", ["a", "b"], {"train": 2})
    (root / stray).parent.mkdir(parents=True, exist_ok=True)
    (root / stray).write_text("x")
    spec = DatasetSpec(source="imagefolder", path=str(root), class_names=["a", "b"])
    with pytest.raises(DataError) as raised:
        load_images("d", spec, tiny)
    layout = f"expected the layout '{root}/train/<class>/*.png' and '{root}/test/<class>/*.png'"
    if stray == "test.csv":
        assert str(raised.value) == f"datasets.d: image folder '{root}' has no 'test' folder (it holds test.csv, train/); {layout}"
    else:
        assert str(raised.value) == f"datasets.d: image folder '{root}' has no image in its 'test' folder (it holds only a/scan.dcm); {layout}"


def test_folder_without_split_folders_through_the_cli(cli, tmp_path, tiny_model_dir):
    root = make_image_folder(tmp_path / "flat", ["blue", "green", "red"], {"train": 2})
    for folder in (root / "train").iterdir():
        folder.rename(root / folder.name)
    (root / "train").rmdir()
    config = tmp_path / "bench.toml"
    config.write_text(tiny_suite_toml(tiny_model_dir, root))
    code, _, err = cli("run", "--all", "--config", config, "--output", tmp_path / "out", "--quiet")
    assert code == 2
    assert " ".join(err.split()) == (
        f"error: datasets.colors: image folder '{root}' has no 'train' folder (it holds blue/, green/, red/); "
        f"expected the layout '{root}/train/<class>/*.png' and '{root}/test/<class>/*.png'"
    )


# --- models whose text tower cannot tell the classes apart


def _edited_tiny_clip(path, **text_config):
    """A tiny CLIP saved locally with config.json's text_config edited afterwards (as a copy whose
    config was written by hand would be), so that saving emits no warning of its own."""
    save_tiny_clip(path)
    config = json.loads((path / "config.json").read_text())
    config["text_config"].update(text_config)
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("edit", "cause"),
    [
        ({"eos_token_id": 49407}, "text_config.eos_token_id 49407 is outside the tokenizer's 262 tokens (0..261); set it to the tokenizer's (261) in config.json"),
        ({"pad_token_id": 300}, "text_config.pad_token_id 300 is outside the tokenizer's 262 tokens (0..261); set it to the tokenizer's (261) in config.json"),
        ({"eos_token_id": 260}, "text_config.eos_token_id 260 is not the tokenizer's end token '<|endoftext|>' (261), so the text tower would pool the wrong token of every prompt; set it in config.json"),
    ],
    ids=["eos-outside", "pad-outside", "eos-is-bos"],
)
def test_config_special_ids_disagreeing_with_the_tokenizer_are_refused(tmp_path, edit, cause):
    path = _edited_tiny_clip(tmp_path / "m", **edit)
    with pytest.raises(ModelError) as raised:
        load_model("tiny", ModelSpec(source="local", path=str(path)))
    assert str(raised.value) == f"models.tiny: '{path}': {cause}"


def test_loading_warnings_are_kept_once_even_when_transformers_is_quiet(tmp_path):
    """The CLI sets transformers' verbosity to error; the config's warning is kept for it to show."""
    import transformers

    path = _edited_tiny_clip(tmp_path / "m", sep_token_id=12345)  # unused by CLIP: loads, with a warning
    before = transformers.logging.get_verbosity()
    library = logging.getLogger("transformers")
    handlers = [(h, list(h.filters)) for h in library.handlers]
    transformers.logging.set_verbosity_error()
    try:
        loaded = load_model("tiny", ModelSpec(source="local", path=str(path)))
    finally:
        transformers.logging.set_verbosity(before)
    kept = [w for w in loaded.warnings if "sep_token_id" in w]
    assert len(kept) == 1 and "must be `None` or an integer within the vocabulary" in kept[0], loaded.warnings
    assert [(h, list(h.filters)) for h in library.handlers] == handlers  # left as found


def test_the_run_shows_what_transformers_warned_of_while_loading(cli, tmp_path, image_folder):
    """transformers' own warning about such a config was swallowed by the quieted library."""
    path = _edited_tiny_clip(tmp_path / "m", sep_token_id=23456)  # another id than above: transformers warns once per message
    config = tmp_path / "benchmark.toml"
    config.write_text(tiny_suite_toml(path, image_folder))
    code, _, err = cli("run", "E1", "--config", config, "--output", tmp_path / "out", "--quiet")
    flowing = " ".join(err.split())
    assert code == 0 and "warning: models.tiny: " in flowing and "sep_token_id" in flowing


def test_a_healthy_model_loads_without_warnings(tiny_model_dir):
    assert load_model("tiny", ModelSpec(source="local", path=str(tiny_model_dir))).warnings == []


def test_classes_with_the_same_text_features_are_refused(tiny):
    clip, tokenizer, processor = tiny_clip()
    clip.text_model.eos_token_id = 49407  # pooling falls on position 0, the same SOS for every prompt
    broken = LoadedModel(clip=clip, tokenizer=tokenizer, image_processor=processor, name="broken")
    with pytest.raises(ModelError) as raised:
        check_distinct_class_features(broken, ["blue", "green", "red"], ["a photo of a {}."])
    assert str(raised.value) == (
        "models.broken: classes 'blue' and 'green' get the same text features (cosine similarity 1.000000): "
        "the text tower pools token 0 of their prompts, before they differ "
        "(the text tower's eos_token_id is 49407, the tokenizer's end token 261); "
        "zero-shot and text prompts cannot tell them apart"
    )


def test_class_names_that_tokenize_alike_are_refused(tiny):
    with pytest.raises(ModelError, match=r"^models.tiny: classes 'Blue' and 'blue' get the same text features \(cosine similarity 1.000000\): their prompts tokenize to the same ids"):
        check_distinct_class_features(tiny, ["Blue", "green", "blue"], ["a photo of a {}.", "a {}."])


def test_distinct_class_features_pass(tiny):
    check_distinct_class_features(tiny, ["blue", "green", "red"], ["a photo of a {}."])
