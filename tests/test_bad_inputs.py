"""The catalogue of bad inputs: each gets one line naming the culprit and a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import COLORS, tiny_suite_toml
from PIL import Image


def _hub_like_dataset(root, image_column="img", label_column="target", names=COLORS):
    """A dataset repository laid out as on the Hub (parquet shards), loaded by path like a Hub id."""
    features = datasets.Features({image_column: datasets.Image(), label_column: datasets.ClassLabel(names=names)})
    for split, n in (("train", 30), ("test", 9)):
        images = [Image.fromarray(np.full((8, 8, 3), (i % 3) * 100, np.uint8)) for i in range(n)]
        data = datasets.Dataset.from_dict({image_column: images, label_column: [i % 3 for i in range(n)]}, features=features)
        (root / "data").mkdir(parents=True, exist_ok=True)
        data.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def _hub_toml(model_dir, dataset_dir, extra=""):
    return tiny_suite_toml(model_dir, "unused").replace(
        'source = "imagefolder"\npath = "unused"',
        f'source = "hub"\nid = "{dataset_dir}"\nimage_column = "img"\nlabel_column = "target"{extra}',
    )


def _run(cli, tmp_path, text, *extra):
    config = tmp_path / "bench.toml"
    config.write_text(text)
    code, out, err = cli("run", "--all", "--config", config, "--output", tmp_path / "out", "--quiet", *extra)
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_hub_dataset_code_path_runs_on_a_local_copy(cli, tmp_path, tiny_model_dir):
    dataset = _hub_like_dataset(tmp_path / "repo")
    code, _, err = _run(cli, tmp_path, _hub_toml(tiny_model_dir, dataset))
    assert code == 0, err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('label_column = "target"', 'label_column = "label"'), "split 'train' has no column 'label'; columns: img, target"),
        (('image_column = "img"', 'image_column = "img"\ntrain_split = "training"'), "split 'training' not found; the dataset has train, test"),
    ],
)
def test_dataset_lacking_declared_columns_or_splits(cli, tmp_path, tiny_model_dir, edit, expected):
    dataset = _hub_like_dataset(tmp_path / "repo")
    code, _, err = _run(cli, tmp_path, _hub_toml(tiny_model_dir, dataset).replace(*edit))
    assert code == 2 and expected in err


def test_class_name_count_must_match_the_labels(cli, tmp_path, tiny_model_dir):
    dataset = _hub_like_dataset(tmp_path / "repo", names=["a", "b", "c", "d"])
    code, _, err = _run(cli, tmp_path, _hub_toml(tiny_model_dir, dataset))
    assert code == 2 and "class_names lists 3 classes but the label column has 4 (a, b, c, d)" in err


def test_class_names_out_of_the_label_columns_order(cli, tmp_path, tiny_model_dir):
    """Label i is prompted as class_names[i]: a reordered list would silently mislabel every class."""
    dataset = _hub_like_dataset(tmp_path / "repo", names=["red", "Green", "blue"])
    code, _, err = _run(cli, tmp_path, _hub_toml(tiny_model_dir, dataset))
    assert code == 2 and "class_names must follow the label column's order (red, Green, blue); 'blue' is listed at position 1 but is class 3 of the label column" in err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_friendlier_class_names_in_the_same_order_are_accepted(cli, tmp_path, tiny_model_dir):
    dataset = _hub_like_dataset(tmp_path / "repo", names=["Blue_sky", "green", "dark-red"])
    code, _, err = _run(cli, tmp_path, _hub_toml(tiny_model_dir, dataset))
    assert code == 0, err


def test_string_labels_are_refused_by_name(cli, tmp_path, tiny_model_dir):
    root = tmp_path / "repo"
    features = datasets.Features({"img": datasets.Image(), "target": datasets.Value("string")})
    for split in ("train", "test"):
        images = [Image.fromarray(np.full((8, 8, 3), i * 80, np.uint8)) for i in range(3)]
        data = datasets.Dataset.from_dict({"img": images, "target": COLORS}, features=features)
        (root / "data").mkdir(parents=True, exist_ok=True)
        data.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    code, _, err = _run(cli, tmp_path, _hub_toml(tiny_model_dir, root))
    assert code == 2 and "label column 'target' holds str values such as 'blue', not class indices" in err


@pytest.mark.parametrize("tokenizer_limit", [True, False])
def test_a_prompt_over_the_text_towers_length_is_refused_before_decoding(cli, tmp_path, tiny_model_dir, image_folder, tokenizer_limit):
    """Truncated, it would lose the class name and every class would share one prompt. A tokenizer
    saved without a limit (transformers then assumes 1e30) must not hide the text tower's."""
    model_dir = tiny_model_dir
    if not tokenizer_limit:
        model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "no-limit"))
        settings = json.loads((model_dir / "tokenizer_config.json").read_text())
        settings.pop("model_max_length")
        (model_dir / "tokenizer_config.json").write_text(json.dumps(settings))
    long = "a very very very very very very very very very long photo of {}."
    text = tiny_suite_toml(model_dir, image_folder).replace("a photo of a {}.", long)
    code, _, err = _run(cli, tmp_path, text)
    assert code == 2 and "datasets.colors: prompt 'a very very" in err and "over the 16-token text limit" in err


def test_corrupt_images_are_all_named(cli, tmp_path, tiny_model_dir, image_folder):
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    for name in ("3.png", "7.png"):
        (folder / "train" / "red" / name).write_bytes(b"not a png")
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    assert code == 2
    err = " ".join(err.split())
    assert "split 'train': 2 of 60 images cannot be decoded" in err and f"{folder}/train/red/3.png" in err and f"{folder}/train/red/7.png" in err


def test_a_class_folder_spelled_otherwise_in_one_split_is_named(cli, tmp_path, tiny_model_dir, image_folder):
    """An image folder's classes are every split's folders together: `test/reds` makes a fourth class."""
    folder = Path(shutil.copytree(image_folder, tmp_path / "images"))
    (folder / "test" / "red").rename(folder / "test" / "reds")
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    assert code == 2 and "class_names lists 3 classes but the label column has 4 (blue, green, red, reds); class folders not in every split: test/reds, train/red" in " ".join(err.split())


@pytest.mark.parametrize(
    ("emptied", "validation_split", "expected"),
    [
        ("train/green", "", "datasets.colors: split 'train' has no image of class 'green', which the test split has"),
        ("validation/red", 'validation_split = "validation"\n', "split 'validation' has no image of class 'red', which the test split has; leave validation_split unset"),
    ],
)
def test_a_class_missing_from_a_split_it_must_learn_or_be_selected_on_is_refused(cli, tmp_path, tiny_model_dir, emptied, validation_split, expected):
    from vptbench.testing import make_image_folder

    folder = make_image_folder(tmp_path / "images", COLORS, {"train": 6, "validation": 3, "test": 3})
    shutil.rmtree(folder / emptied)
    toml = tiny_suite_toml(tiny_model_dir, folder).replace("templates =", validation_split + "templates =")
    code, _, err = _run(cli, tmp_path, toml)
    assert code == 2 and expected in err, err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_runs_that_do_not_train_need_no_class_in_train_or_validation(cli, tmp_path, tiny_model_dir):
    """Zero-shot learns nothing and selects nothing: a train split without green does not concern it."""
    from vptbench.testing import make_image_folder

    folder = make_image_folder(tmp_path / "images", COLORS, {"train": 6, "validation": 3, "test": 3})
    shutil.rmtree(folder / "train" / "green")
    shutil.rmtree(folder / "validation" / "red")
    toml = tiny_suite_toml(tiny_model_dir, folder).replace("templates =", 'validation_split = "validation"\ntemplates =')
    config = tmp_path / "bench.toml"
    config.write_text(toml)
    code, _, err = cli("run", "E1", "--config", config, "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    (record,) = (tmp_path / "out").glob("*/runs/E1-seed0.json")
    record = json.loads(record.read_text())
    assert record["status"] == "ok" and record["split_sizes"]["test"] == 9
    code, _, err = cli("run", "E2", "--config", config, "--output", tmp_path / "out", "--quiet")  # the linear probe trains
    assert code == 2 and "split 'train' has no image of class 'green'" in err
    for image in sorted((folder / "train" / "red").iterdir())[1:]:  # one red image: too few to stratify
        image.unlink()
    config.write_text(tiny_suite_toml(tiny_model_dir, folder))  # validation carved from train
    code, _, err = cli("run", "E1", "--config", config, "--output", tmp_path / "carved", "--quiet")
    assert code == 0, err
    (record,) = (tmp_path / "carved").glob("*/runs/E1-seed0.json")
    assert json.loads(record.read_text())["split_sizes"] == {"train": 5, "val": 2, "test": 9}


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_test_split_without_a_class_is_said_on_the_terminal_as_in_the_report(cli, tmp_path, tiny_model_dir):
    from vptbench.testing import make_image_folder

    folder = make_image_folder(tmp_path / "images", COLORS, {"train": 6, "test": 3})
    shutil.rmtree(folder / "test" / "green")
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    note = "The test split has no image of green: macro-F1 averages over the classes it holds or the model predicts."
    assert code == 0 and " ".join(err.split()).count(note) == 1, err
    code, _, err = cli("report", "--output", tmp_path / "out")
    assert code == 0 and note in " ".join(err.split())


def test_a_split_folder_without_class_subfolders_is_named(cli, tmp_path, tiny_model_dir, image_folder):
    """datasets then drops every split's labels; the message must name the folder at fault, not train."""
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    for index, image in enumerate(sorted((folder / "test").glob("*/*.png"))):
        image.rename(folder / "test" / f"{index:02d}.png")
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    expected = f"datasets.colors: '{folder / 'test'}' holds images directly (00.png, 01.png, 02.png (+27 more)); an image folder labels"
    assert code == 2 and expected in err, err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_class_no_split_has_is_only_an_unused_logit(cli, tmp_path, tiny_model_dir):
    """A filtered Hub dataset keeps its full ClassLabel, and class_names must match it."""
    names = [*COLORS, "purple"]
    dataset = _hub_like_dataset(tmp_path / "repo", names=names)
    toml = _hub_toml(tiny_model_dir, dataset).replace(f"class_names = {COLORS!r}", f"class_names = {names!r}")
    code, _, err = _run(cli, tmp_path, toml)
    assert code == 0, err


def test_a_class_too_small_for_a_stratified_validation_split(cli, tmp_path, tiny_model_dir):
    from vptbench.testing import make_image_folder

    folder = make_image_folder(tmp_path / "few", COLORS, {"train": 1, "test": 2})
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    expected = f"datasets.colors: cannot carve a stratified validation split (20% of train): classes {', '.join(map(repr, COLORS))} have a single training image"
    assert code == 2 and expected in err, err
    folder = make_image_folder(tmp_path / "three", COLORS, {"train": 3, "test": 2})
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    expected = "(20% of train): 9 training images leave 2 for validation, fewer than the 3 classes each side must hold; add training images"
    assert code == 2 and expected in err, err


def _drop_text_weights(model):
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("text_model.")}, model / "model.safetensors", metadata={"format": "pt"})


def _widen_visual_projection(model):
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    rows, columns = weights["visual_projection.weight"].shape
    weights["visual_projection.weight"] = torch.zeros(rows + 1, columns)
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})


def _as_bert(model):
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(config | {"model_type": "bert", "architectures": ["BertModel"]}))


def _truncate_weights(model):
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])


def _bad_config_beside_a_damaged_adapter(model):
    (model / "adapter_model.safetensors").write_bytes(b"not safetensors")
    (model / "config.json").write_text("{not json")


def _resize_processor(model):
    config = json.loads((model / "preprocessor_config.json").read_text())
    config.update(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    (model / "preprocessor_config.json").write_text(json.dumps(config))


def _stop_cropping(model):
    config = json.loads((model / "preprocessor_config.json").read_text())
    (model / "preprocessor_config.json").write_text(json.dumps(config | {"do_center_crop": False}))


def _save_hub_stub_tokenizer(model):
    from transformers import CLIPTokenizer

    CLIPTokenizer(vocab={"<|startoftext|>": 0, "<|endoftext|>": 1}, merges=[]).save_pretrained(model)  # what the Hub gives offline


def _remove_tokenizer(model):
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda model: (model / "config.json").unlink(), "local model folder '{model}' has no config.json"),
        (_as_bert, "'{model}' holds a 'bert' model, not CLIP"),
        (_drop_text_weights, "checkpoint of '{model}' lacks 36 of the model's weights (text_model.embeddings.position_embedding.weight, "),
        (_widen_visual_projection, "checkpoint of '{model}' has weights of the wrong shape for its config: visual_projection.weight (33, 64) vs (32, 64)"),
        (_truncate_weights, "weights file '{model}/model.safetensors' is damaged or truncated (Error while deserializing header"),
        (_bad_config_beside_a_damaged_adapter, "cannot load '{model}': It looks like the config file at '{model}/config.json' is not a valid JSON file."),
        (_resize_processor, "the image processor of '{model}' turns a 48×24 image into 224×224, but the vision tower takes 32×32"),
        (_stop_cropping, "the image processor of '{model}' turns a 48×24 image into 64×32, but the vision tower takes 32×32"),
        (_save_hub_stub_tokenizer, "tokenizer of '{model}' has only its 2 special tokens (an offline stub, or a folder saved without"),
        (_remove_tokenizer, "tokenizer of '{model}' has only its 2 special tokens (an offline stub, or a folder saved without"),
    ],
    ids=["no-config", "not-clip", "missing-weights", "misshapen-weights", "truncated-weights", "bad-config", "processor-size", "processor-no-crop", "stub-tokenizer", "no-tokenizer"],
)
def test_a_damaged_model_folder_is_refused_instead_of_filled_with_random_weights(cli, tmp_path, image_folder, damage, expected):
    from vptbench.testing import save_tiny_clip

    model = save_tiny_clip(tmp_path / "model")
    damage(model)
    code, out, err = _run(cli, tmp_path, tiny_suite_toml(model, image_folder))
    assert code == 2 and f"models.tiny: {expected.format(model=model)}" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_file_where_a_folder_is_declared_is_named_as_a_file(cli, tmp_path, tiny_model_dir, image_folder):
    """Not "does not exist": the user is looking at it. And no empty progress bar is left above the error."""
    config = tmp_path / "bench.toml"
    for model, data, expected in (
        (tiny_model_dir / "config.json", image_folder, f"models.tiny: local model folder '{tiny_model_dir / 'config.json'}' is a file, not a folder"),
        (tiny_model_dir, image_folder / "README", f"datasets.colors: image folder '{image_folder / 'README'}' does not exist"),
        (tiny_model_dir, next(image_folder.glob("test/*/*.png")), "is a file, not a folder"),
    ):
        config.write_text(tiny_suite_toml(model, data))
        code, out, err = cli("run", "--all", "--config", config, "--output", tmp_path / "out")
        lines = err.splitlines()  # the suite's banner, then the error: no "suite 0/2" bar, no blank line
        assert code == 2 and lines[0].startswith("Suite s:") and lines[-1].startswith("error: ") and expected in lines[-1], err
        assert "0/2" not in err and all(line.strip() for line in lines), err
        assert out == "" and not (tmp_path / "out").exists()


def test_a_folder_inside_a_class_folder_is_named(cli, tmp_path, tiny_model_dir, image_folder):
    """datasets then drops every split's labels, and would have us blame train's missing label column."""
    folder = shutil.copytree(image_folder, tmp_path / "images")
    (folder / "test" / "red" / "more").mkdir()
    (folder / "test" / "red" / "0.png").rename(folder / "test" / "red" / "more" / "0.png")
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    assert code == 2 and f"datasets.colors: '{folder / 'test'}' has folders inside its class folders (red/more)" in " ".join(err.split()), err


def test_a_config_without_model_type_still_loads(tmp_path):
    """Older save_pretrained folders omit model_type; CLIPModel reads them as CLIP."""
    from vptbench.models import load_model
    from vptbench.registry import ModelSpec
    from vptbench.testing import save_tiny_clip

    model = save_tiny_clip(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    del config["model_type"]
    (model / "config.json").write_text(json.dumps(config))
    assert load_model("old", ModelSpec(source="local", path=str(model))).clip.config.projection_dim == 32


def test_the_hub_being_offline_is_blamed_only_for_a_file_it_could_not_fetch():
    from vptbench.errors import load_failure

    damaged = load_failure("models.m", "org/clip", True, "save it locally", RuntimeError("Error while deserializing header"))
    missing = load_failure("models.m", "org/clip", True, "save it locally", OSError("not cached"))
    assert damaged == "models.m: cannot load 'org/clip': Error while deserializing header"
    assert missing.startswith("models.m: 'org/clip' must come from the HuggingFace Hub, which is offline here")


def test_a_small_but_real_tokenizer_is_accepted(tmp_path):
    """A project's own tokenizer may be tiny; only one of nothing but special tokens is a stub."""
    from transformers import CLIPTokenizer

    from vptbench.models import load_model
    from vptbench.registry import ModelSpec
    from vptbench.testing import save_tiny_clip

    model = save_tiny_clip(tmp_path / "model")
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1} | {token: i + 2 for i, token in enumerate(letters + [c + "</w>" for c in letters])}
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(model)
    config = json.loads((model / "config.json").read_text())  # its special tokens, as the model's must be
    config["text_config"].update(bos_token_id=0, eos_token_id=1, pad_token_id=1)
    (model / "config.json").write_text(json.dumps(config))
    loaded = load_model("small", ModelSpec(source="local", path=str(model)))
    assert len(loaded.tokenizer) == 54


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_results_directory(cli, tmp_path, tiny_config):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = cli("run", "--all", "--config", tiny_config, "--output", locked / "results", "--quiet")
    assert code == 2 and "cannot write results" in err


def test_unwritable_results_path_is_a_file(cli, tmp_path, tiny_config):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    for output in (blocker, blocker / "below"):
        code, _, err = cli("run", "--all", "--config", tiny_config, "--output", output)
        assert code == 2 and err.strip() == f"error: --output: cannot write results to '{output}': '{blocker}' is a file"  # before any loading


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_cuda_out_of_memory_is_a_status_and_can_retry_with_accumulation(cli, tiny_config, tmp_path, monkeypatch):
    import vptbench.harness.trainer as trainer

    real_step = trainer.train_step

    def oom_unless_accumulating(logits_fn, x, y, optimizer, precision, accumulation=1, label_smoothing=0.0):
        if accumulation < 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(logits_fn, x, y, optimizer, precision, accumulation, label_smoothing)

    monkeypatch.setattr(trainer, "train_step", oom_unless_accumulating)
    code, out, _ = cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "a", "--quiet", "--json")
    (run,) = json.loads(out)["runs"]
    assert code == 1 and run["status"] == "oom" and "while training at batch size 8" in run["error"] and "--retry-oom" in run["error"]
    code, out, _ = cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "b", "--quiet", "--json", "--retry-oom")
    assert code == 0
    (run_dir,) = (tmp_path / "b").iterdir()
    record = json.loads((run_dir / "runs" / "E2-seed0.json").read_text())
    assert (record["batch_size"], record["accumulation_steps"]) == (8, 4)


def test_out_of_memory_outside_training_is_not_retried(cli, tiny_config, tmp_path, monkeypatch):
    """Smaller micro-batches cannot help an evaluation that runs out of memory: say what can."""
    import vptbench.harness.runner as runner

    trainings = []
    real_fit = runner.fit
    monkeypatch.setattr(runner, "fit", lambda *args: (trainings.append(1), real_fit(*args))[1])

    def no_room(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "evaluate", no_room)
    code, out, _ = cli("run", "E2", "--config", tiny_config, "--output", tmp_path, "--quiet", "--json", "--retry-oom")
    (run,) = json.loads(out)["runs"]
    assert code == 1 and run["status"] == "oom" and len(trainings) == 1
    assert run["error"] == "CUDA out of memory while evaluating in batches of 256; lower eval_batch_size"


def test_out_of_memory_while_encoding_features_names_the_batch_to_lower(cli, tiny_config, tmp_path, monkeypatch):
    def no_room(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("vptbench.harness.runner._encode", no_room)
    code, out, _ = cli("run", "E2", "--config", tiny_config, "--output", tmp_path, "--quiet", "--json", "--retry-oom")
    (run,) = json.loads(out)["runs"]
    assert code == 1 and run["status"] == "oom"
    assert run["error"] == "CUDA out of memory while encoding features in batches of 256; lower eval_batch_size"


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_retries_stop_at_one_image_per_micro_batch(cli, tiny_config, tmp_path, monkeypatch):
    import vptbench.harness.trainer as trainer

    tried = []

    def always_out_of_memory(logits_fn, x, y, optimizer, precision, accumulation=1, label_smoothing=0.0):
        tried.append(accumulation)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "train_step", always_out_of_memory)
    code, out, _ = cli("run", "E2", "--config", tiny_config, "--output", tmp_path, "--quiet", "--json", "--retry-oom")
    (run,) = json.loads(out)["runs"]
    assert code == 1 and tried == [1, 2, 4, 8]  # batch 8: micro-batches of 8, 4, 2, then 1
    assert run["status"] == "oom" and "at batch size 8 (micro-batches of 1)" in run["error"]


def test_a_dataset_too_large_for_the_device_is_one_line(cli, tiny_config, tmp_path, monkeypatch):
    from vptbench.data import ImageData

    def no_room(self, device):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 15.00 GiB")

    monkeypatch.setattr(ImageData, "to", no_room)
    code, out, err = cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet")
    assert code == 2 and "Traceback" not in out + err
    assert "error: datasets.colors: the decoded images (0.0 GiB as uint8) do not fit in cpu memory" in err


def test_accumulation_keeps_the_effective_batch():
    """Micro-batches must add up to the same gradients as the whole batch."""
    from vptbench.harness.trainer import Precision, train_step

    def step(accumulation):
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        x, y = torch.randn(8, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        loss, logits = train_step(model, x, y, optimizer, Precision("fp32", torch.device("cpu")), accumulation)
        return loss, logits, model.weight.detach()

    whole, parts = step(1), step(4)
    assert torch.allclose(whole[0], parts[0], atol=1e-6) and torch.allclose(whole[2], parts[2], atol=1e-6)
    assert torch.equal(whole[1], parts[1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--device", "xpu"), "--device: 'xpu' is not a device vptbench runs on"),
        (("--device", "cpu:1"), "--device: 'cpu:1' is not a device vptbench runs on"),
        (("--seeds", ""), "--seeds: name at least one seed, e.g. 0,1,2 or 0-4"),
        (("--seeds", "0-"), "--seeds: '0-' is not a seed like 3 or a range like 0-4"),
        (("--seeds", "1,x3"), "--seeds: 'x3' in '1,x3' is not a seed like 3 or a range like 0-4"),
        (("--seeds", "0,,1"), "--seeds: '0,,1' has an empty part between commas"),
        (("--seeds", "-1"), "--seeds: '-1' is not a seed like 3"),
        (("--seeds", "٣"), "--seeds: '٣' is not a seed like 3"),
        (("--seeds", "0-4,3"), "--seeds: seed 3 is named twice in '0-4,3'"),
        (("--seeds", "0-1000000000"), "asks for more than 1000 seeds"),
        (("--seeds", "0-999,1000"), "--seeds: '0-999,1000' asks for more than 1000 seeds"),
        (("--seeds", "4294967296"), "must name seeds from 0 to 4294967295"),
        (("--seeds", "0,3-1"), "--seeds: the range '3-1' runs backwards; write 1-3"),
    ],
)
def test_bad_command_line_values(cli, tiny_config, tmp_path, args, expected):
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--quiet", *args)
    assert code == 2 and expected in err and "Traceback" not in out + err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "--all", "--epochs", "0"), "error: Invalid value for '--epochs'"),
        (("run", "--all", "--bogus"), "error: No such option: --bogus (see '"),
        (("frobnicate",), "error: No such command 'frobnicate' (see '"),
        (("bench", "--peak-tflops=-1"), "error: Invalid value for '--peak-tflops': -1 is not a positive, finite number"),
        (("bench", "--peak-tflops", "nan"), "error: Invalid value for '--peak-tflops': nan is not a positive, finite number"),
    ],
)
def test_click_usage_errors_are_one_line_too(cli, args, expected):
    code, out, err = cli(*args)
    assert code == 2 and err.strip().splitlines() == [err.strip()] and err.startswith(expected)
    assert "Usage:" not in err and "Traceback" not in out + err


def test_help_exits_zero_and_no_arguments_shows_help_with_exit_two(cli):
    code, out, err = cli("--help")
    assert code == 0 and "run" in out and "list" in out
    code, out, err = cli()
    assert code == 2 and "Usage:" in out + err and "error:" not in err


def test_a_repeated_experiment_id_runs_once(cli, tiny_config, tmp_path):
    code, out, _ = cli("run", "E1", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet", "--json")
    assert code == 0 and [r["experiment"] for r in json.loads(out)["runs"]] == ["E1"]


def test_report_and_resume_refuse_a_folder_that_is_not_a_run(cli, tmp_path):
    (tmp_path / "run.json").write_text("[1, 2]")
    for args in (("report", tmp_path), ("run", "--resume", tmp_path)):
        code, out, err = cli(*args)
        assert code == 2 and "is not a valid vptbench run directory" in err and "Traceback" not in out + err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_damaged_record_counts_as_not_run_and_resume_reruns_it(cli, tiny_config, tmp_path):
    """One file cut short, edited by hand or copied over another must not hide the others' results."""
    assert cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--seeds", "0-1", "--quiet")[0] == 0
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    runs = run_dir / "runs"
    record = json.loads((runs / "E2-seed0.json").read_text())
    del record["confusion_matrix"]
    (runs / "E2-seed0.json").write_text(json.dumps(record))
    (runs / "E1-seed1.json").write_text("{\n")
    e1 = json.loads((runs / "E1-seed0.json").read_text())
    (runs / "E1-seed0.json").write_text(json.dumps({**e1, "tuner": "linear-probe"}))
    (runs / "notes.json").write_text((runs / "E2-seed1.json").read_text())  # a copy under another name
    (runs / "E9-seed0.json").write_text(json.dumps({**e1, "experiment": "E9"}))
    code, out, err = cli("report", run_dir)
    err = " ".join(err.split())
    assert code == 0 and "Traceback" not in out + err
    assert f"damaged record: {runs}/E1-seed1.json (Expecting property name" in err
    assert f"damaged record: {runs}/E2-seed0.json (a finished run lacks confusion_matrix): left out" in err
    assert f"damaged record: {runs}/E1-seed0.json (it was made by tuner linear-probe, but E1 runs zero-shot): left out" in err
    assert f"damaged record: {runs}/notes.json (it holds the record of E2-seed1): left out" in err
    assert f"damaged record: {runs}/E9-seed0.json (E9-seed0 is not in this run's plan): left out" in err
    assert "Not run: E1-seed0, E1-seed1, E2-seed0 (3 of 4 planned runs have no record; `vptbench run --resume` runs them)" in err
    reported = json.loads((run_dir / "report.json").read_text())["runs"]
    assert [(r["experiment"], r["seed"]) for r in reported] == [("E2", 1)]
    code, _, err = cli("run", "--resume", run_dir, "--quiet")
    assert code == 0 and "E2-seed0.json (a finished run lacks confusion_matrix): left out; a planned run without its record runs again" in " ".join(err.split())
    reported = json.loads((run_dir / "report.json").read_text())["runs"]
    assert [(r["experiment"], r["seed"]) for r in reported] == [("E1", 0), ("E1", 1), ("E2", 0), ("E2", 1)]
    err = " ".join(cli("report", run_dir)[2].split())
    assert err.count("damaged record") == 2 and "notes.json" in err and "E9-seed0.json" in err  # only the strays are left


def test_a_run_whose_process_was_killed_is_reported_as_interrupted(cli, tiny_config, tmp_path):
    """kill -9 leaves run.json saying "running" and a lock naming a process that is gone."""
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 0
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "status": "running"}))
    (run_dir / ".lock").write_text(f"{socket.gethostname()} 999999999")
    assert cli("report", run_dir)[0] == 0
    assert json.loads((run_dir / "report.json").read_text())["status"] == "interrupted"
    assert "status **interrupted**" in (run_dir / "report.md").read_text()


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_runs_with_different_settings_are_not_combined(cli, tiny_config, tmp_path):
    for seed, epochs in (("0", "3"), ("1", "2")):
        args = ("run", "E2", "--config", tiny_config, "--output", tmp_path / "runs", "--seeds", seed, "--epochs", epochs, "--quiet")
        assert cli(*args)[0] == 0
    first, second = sorted((tmp_path / "runs").iterdir())
    code, out, err = cli("report", first, second, "--output", tmp_path / "combined")
    assert code == 2 and "they ran with different settings of E2 (training.epochs)" in err
    assert not (tmp_path / "combined").exists()


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_feature_cache_must_be_a_folder_and_damaged_entries_are_recomputed(cli, tiny_config, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file")
    code, _, err = cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "a", "--quiet", "--feature-cache", blocker)
    assert code == 2 and err.strip() == f"error: --feature-cache: cannot write to '{blocker}': '{blocker}' is a file"
    cache = tmp_path / "real-cache"
    assert cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "b", "--quiet", "--feature-cache", cache)[0] == 0
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(b"damaged")

    def features_from(output: str) -> str:
        code, out, _ = cli("run", "E2", "--config", tiny_config, "--output", tmp_path / output, "--quiet", "--feature-cache", cache, "--json")
        assert code == 0
        (run_dir,) = (tmp_path / output).iterdir()
        return json.loads((run_dir / "runs" / "E2-seed0.json").read_text())["features_from"]

    assert features_from("c") == "computed" and entry.read_bytes() != b"damaged"  # recomputed and rewritten
    assert features_from("d") == "disk"


def test_brackets_in_an_error_are_shown_not_read_as_markup(cli, tmp_path, tiny_model_dir, image_folder):
    config = tmp_path / "[red]" / "bench.toml"
    config.parent.mkdir()
    config.write_text(tiny_suite_toml(tiny_model_dir, image_folder).replace('model = "tiny"', 'model = "nomodel"'))
    code, _, err = cli("list", "--config", config)
    assert code == 2 and "/[red]/bench.toml" in err and "'nomodel' is not declared under [models]" in err


def test_an_unwritable_run_directory_is_one_line_and_keeps_its_files(cli, tiny_config, tmp_path, monkeypatch):
    """Root ignores permissions, so the read-only file system is simulated where files are created."""
    import errno
    import tempfile

    assert cli("run", "E2", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 0
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code, out, err = cli("report", run_dir)
    assert code == 2 and "Traceback" not in out + err and f"cannot write '{run_dir / 'results.csv'}': Read-only file system" in err
    monkeypatch.setattr("vptbench.results.lock.RunLock._acquire", read_only)
    code, out, err = cli("run", "--resume", run_dir, "--quiet")
    assert code == 2 and "Traceback" not in out + err and f"cannot lock '{run_dir}': Read-only file system" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_results_from_another_schema_are_refused_by_version(cli, tiny_config, tmp_path):
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 0
    (run_dir,) = (p for p in tmp_path.iterdir() if p.is_dir())
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "schema_version": 99}))
    code, out, err = cli("report", run_dir)
    assert code == 2 and "Traceback" not in out + err and "was written with results schema 99; this vptbench reads schema 1" in err


def test_a_feature_cache_that_cannot_be_written_is_refused_before_any_run(cli, tiny_config, tmp_path, monkeypatch):
    import errno
    import tempfile

    cache = tmp_path / "cache"
    real = tempfile.TemporaryFile

    def read_only_cache(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == cache:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_cache)
    code, out, err = cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "out", "--quiet", "--feature-cache", cache)
    assert code == 2 and f"--feature-cache: cannot write to '{cache}': Read-only file system" in err
    assert not (tmp_path / "out").exists()


def test_an_image_folder_with_one_class_says_what_is_missing(cli, tmp_path, tiny_model_dir):
    from vptbench.testing import make_image_folder

    folder = make_image_folder(tmp_path / "one", ["red"], {"train": 4, "test": 2})
    code, _, err = _run(cli, tmp_path, tiny_suite_toml(tiny_model_dir, folder))
    assert code == 2 and "has no column 'label'" in err and "it needs at least two" in err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_result_files_follow_the_umask(cli, tiny_config, tmp_path, monkeypatch):
    import vptbench.results.io as results

    current = os.umask(0o022)
    os.umask(current)
    assert results.UMASK == current  # read once, at import, and put back
    for umask, expected in ((0o022, 0o644), (0o077, 0o600)):
        monkeypatch.setattr(results, "UMASK", umask)
        assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path / oct(umask), "--quiet")[0] == 0
        modes = {p.stat().st_mode & 0o777 for p in (tmp_path / oct(umask)).rglob("*") if p.is_file() and p.name != ".lock"}
        assert modes == {expected}, (oct(umask), modes)


def test_debug_shows_the_traceback_and_keeps_the_exit_code(cli, tiny_config):
    code, _, err = cli("--debug", "run", "E9", "--config", tiny_config)
    assert code == 2 and "Traceback (most recent call last)" in err and "UsageError: suite 's'" in err
    code, _, err = cli("run", "E9", "--config", tiny_config)  # and off again for the next command
    assert code == 2 and "Traceback" not in err


@pytest.mark.slow  # end to end through the CLI
def test_a_run_recorded_before_a_setting_existed_combines_with_one_at_its_default(cli, tiny_config, tmp_path):
    """run.json of an older vptbench lacks the newer training settings (momentum, schedule, …): it
    ran them at their defaults, so it combines with a run that records them."""
    for seed in ("0", "1"):
        assert cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "runs", "--seeds", seed, "--quiet")[0] == 0
    first, second = sorted((tmp_path / "runs").iterdir())
    manifest = json.loads((first / "run.json").read_text())
    for name in ("momentum", "schedule", "warmup_epochs", "label_smoothing", "augment", "refit"):
        del manifest["config"]["experiments"]["E2"]["training"][name]
    (first / "run.json").write_text(json.dumps(manifest))
    code, _, err = cli("report", first, second, "--output", tmp_path / "combined")
    assert code == 0, err
