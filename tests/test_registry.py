"""The registry: shipped suites validate in both phases; every bad input names file and TOML path."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from vptbench.errors import ConfigError, UsageError
from vptbench.harness.planning import plan_experiments, select_suite
from vptbench.registry import load_registry
from vptbench.registry.load import PACKAGED_CONFIG


def test_shipped_registry_validates_every_suite_and_tuner_params():
    registry, path = load_registry(PACKAGED_CONFIG)
    assert {"demo", "paper"} <= set(registry.suites) and registry.default_suite == "demo"
    for name, suite in registry.suites.items():
        plans = plan_experiments(name, suite, path, list(suite.experiments))
        assert all(plan.tuner is not None and plan.error == "" for plan in plans)
    assert [e.tuner for e in registry.suites["paper"].experiments.values()] == [
        "zero-shot", "linear-probe", "vpt-shallow", "vpt-deep", "dual-prompt", "full-finetune",
    ]  # fmt: skip


def test_the_readme_registry_example_is_a_complete_file(tmp_path):
    """A user's benchmark.toml replaces the packaged one: the README's example must stand alone."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("```toml\n[models.my-clip]", 1)[1].split("```", 1)[0]
    registry, path = _load(tmp_path, "[models.my-clip]" + example)
    (plan,) = plan_experiments("mine", registry.suites["mine"], path, ["E3"])
    assert plan.tuner is not None and registry.models["my-clip"].path == str(tmp_path / "models" / "clip-vit-b16")


def test_paper_suite_carries_the_reference_study():
    registry, _ = load_registry(PACKAGED_CONFIG)
    paper = registry.suites["paper"]
    training = paper.training
    assert (training.optimizer, training.lr, training.batch_size, training.epochs) == ("adam", 1e-3, 32, 500)
    assert registry.models[paper.model].id == "openai/clip-vit-base-patch16"
    assert registry.datasets[paper.dataset].id == "aggr8/brain_mri_train_test_split"
    accuracies = {k: e.reference.test_accuracy for k, e in paper.experiments.items()}
    assert accuracies == {"E1": 0.29, "E2": 0.91, "E3": 0.88, "E4": 0.92, "E5": 1.0, "E6": 0.95}


def _load(tmp_path, text):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return load_registry(path)


VALID = """
[models.m]
source = "builtin"
id = "demo-clip"
[datasets.d]
source = "builtin"
id = "sklearn-digits"
class_names = ["a", "b"]
[suites.demo]
model = "m"
dataset = "d"
[suites.demo.training]
lr = 0.001
[suites.demo.experiments.E1]
tuner = "vpt-shallow"
params = { num_tokens = 4 }
"""


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("[models.m]", "[models.m\n"), "malformed TOML"),
        (("lr = 0.001", "lr = 0.001\nlearning_rate = 1"), "suites.demo.training.learning_rate: unknown key"),
        (("lr = 0.001", "lr = 0"), "suites.demo.training.lr: Input should be greater than 0"),
        (("lr = 0.001", "lr = 'fast'"), 'suites.demo.training.lr: Input should be a valid number (got "fast")'),
        (("lr = 0.001", 'epochs = "4"'), 'suites.demo.training.epochs: Input should be a valid integer (got "4")'),
        (("lr = 0.001", "epochs = 4.0"), "suites.demo.training.epochs: Input should be a valid integer (got 4.0)"),
        (("lr = 0.001", 'compile = "no"'), 'suites.demo.training.compile: Input should be a valid boolean (got "no")'),
        (("lr = 0.001", "epochs = 0"), "suites.demo.training.epochs: Input should be greater than or equal to 1"),
        (("lr = 0.001", "batch_size = -1"), "suites.demo.training.batch_size: Input should be greater than or equal to 1"),
        (("lr = 0.001", "val_fraction = 1.0"), "suites.demo.training.val_fraction: Input should be less than 1"),
        (("lr = 0.001", "seeds = [-1]"), "suites.demo.training.seeds.0: Input should be greater than or equal to 0"),
        (('model = "m"', 'model = "nope"'), "suites.demo.model: 'nope' is not declared under [models]"),
        (('id = "demo-clip"', 'path = "x"'), "models.m: source 'builtin' takes `id`"),
        (('class_names = ["a", "b"]', 'class_names = ["a", "a"]'), "class_names contains duplicates"),
        (('class_names = ["a", "b"]', 'class_names = ["a", " "]'), 'datasets.d.class_names.1: a class name cannot be blank: zero-shot prompts each class by its name'),
        (("lr = 0.001", "lr = inf"), "suites.demo.training.lr: Input should be a finite number"),
        (("lr = 0.001", "seeds = [0, 0]"), "suites.demo.training.seeds: contains duplicates"),
        (("lr = 0.001", "seeds = [4294967296]"), "suites.demo.training.seeds.0: Input should be less than 4294967296"),
        (("[suites.demo.experiments.E1]", '[suites.demo.experiments."../x"]'), "String should match pattern"),
        (('class_names = ["a", "b"]', 'class_names = ["a", "b"]\ntemplates = ["{} and {}"]'), "must contain exactly one '{}'"),
        (('class_names = ["a", "b"]', 'class_names = ["a", "b"]\ntemplates = ["a picture"]'), "must contain exactly one '{}'"),
    ],
)
def test_outer_schema_errors_name_file_and_path(tmp_path, edit, expected):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, VALID.replace(*edit))
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bench.toml")) and expected in message
    assert "\n" not in message


def test_strict_validation_still_reads_toml_into_paths_enums_tuples_and_floats(tmp_path):
    """Strictness refuses coercing one TOML type into another, not what TOML cannot spell."""
    import enum

    from pydantic import BaseModel

    from vptbench.registry.load import validate

    class Mode(enum.Enum):
        fast = "fast"

    class PluginConfig(BaseModel):
        folder: Path
        mode: Mode
        modules: tuple[str, ...]
        scale: float
        when: str

    data = {"folder": "a/b", "mode": "fast", "modules": ["q", "v"], "scale": 2, "when": datetime.date(2026, 11, 28)}  # as TOML reads them
    config = validate(PluginConfig, data, tmp_path / "bench.toml")
    assert config == PluginConfig(folder=Path("a/b"), mode=Mode.fast, modules=("q", "v"), scale=2.0, when="2026-11-28")


def test_a_config_that_rewrites_its_input_is_validated_as_pydantic_would(tmp_path):
    """A `before` validator's output is checked by pydantic in strict Python mode, which refuses a
    list for a tuple; such a Config gets lax validation, still with unknown keys refused."""
    from pydantic import BaseModel, model_validator

    from vptbench.registry.params import validate_params

    class Rewriting(BaseModel):
        modules: tuple[str, ...]
        rank: int = 8

        @model_validator(mode="before")
        @classmethod
        def _lower(cls, data):
            return {**data, "modules": [m.lower() for m in data["modules"]]}

    class Plain(BaseModel):
        modules: tuple[str, ...]
        rank: int = 8

    assert validate_params(Rewriting, {"modules": ["Q", "V"], "rank": "4"}, tmp_path / "b.toml").modules == ("q", "v")
    with pytest.raises(ConfigError, match="rnak: unknown key"):
        validate_params(Rewriting, {"modules": ["q"], "rnak": 4}, tmp_path / "b.toml")
    with pytest.raises(ConfigError, match=r'rank: Input should be a valid integer \(got "4"\)'):
        validate_params(Plain, {"modules": ["q"], "rank": "4"}, tmp_path / "b.toml")


def test_a_type_error_quotes_the_value_as_written(tmp_path):
    with pytest.raises(ConfigError, match='class_names.0: Input should be a valid string \\(got 3\\)'):
        _load(tmp_path, VALID.replace('class_names = ["a", "b"]', 'class_names = [3, "b"]'))
    with pytest.raises(ConfigError, match='lr: Input should be a valid number \\(got "méningiome"\\)'):
        _load(tmp_path, VALID.replace("lr = 0.001", 'lr = "méningiome"'))


def test_malformed_toml_reports_line_and_column(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2, column \d+"):
        _load(tmp_path, VALID.replace("[models.m]", "[models.m"))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("{ num_tokens = 0 }", "suites.demo.experiments.E1.params.num_tokens: Input should be greater than or equal to 1"),
        ("{ tokens = 4 }", "suites.demo.experiments.E1.params.tokens: unknown key"),
        ('{ head = "mlp" }', "suites.demo.experiments.E1.params.head: Input should be 'linear' or 'text'"),
        ("{ num_tokens = true }", "suites.demo.experiments.E1.params.num_tokens: Input should be a valid integer (got true)"),
        ('{ dropout = "0.1" }', 'suites.demo.experiments.E1.params.dropout: Input should be a valid number (got "0.1")'),
    ],
)
def test_tuner_params_are_validated_by_the_tuner_config(tmp_path, params, expected):
    registry, path = _load(tmp_path, VALID.replace("{ num_tokens = 4 }", params))
    with pytest.raises(ConfigError) as info:
        plan_experiments("demo", registry.suites["demo"], path, ["E1"])
    assert expected in str(info.value)


def test_unknown_tuner_suggests_the_closest_name(tmp_path):
    registry, path = _load(tmp_path, VALID.replace('"vpt-shallow"', '"vpt-shalow"'))
    with pytest.raises(ConfigError, match=r"Unknown tuner 'vpt-shalow'. Did you mean 'vpt-shallow'\? Available: .*zero-shot"):
        plan_experiments("demo", registry.suites["demo"], path, ["E1"])


def test_unknown_experiment_and_suite_are_usage_errors(tmp_path):
    registry, path = _load(tmp_path, VALID)
    with pytest.raises(UsageError, match="suite 'demo': Unknown experiment 'E9'"):
        plan_experiments("demo", registry.suites["demo"], path, ["E9"])
    with pytest.raises(UsageError, match="Unknown suite 'dem'. Did you mean 'demo'"):
        select_suite(registry, "dem")
    with pytest.raises(UsageError, match="Unknown experiment 'e1'. Did you mean 'E1'"):  # the case a shell user typed
        plan_experiments("demo", registry.suites["demo"], path, ["e1"])


def test_experiment_overrides_inherit_the_rest(tmp_path):
    """Down to the keys of a partial convergence table: the suite's tolerance stays."""
    suite_convergence = VALID.replace("lr = 0.001\n", "lr = 0.001\nconvergence = { tolerance = 0.05, min_delta = 0.002 }\n")
    registry, _ = _load(tmp_path, suite_convergence + 'training = { epochs = 7, convergence = { patience = 3 } }\n')
    training = registry.suites["demo"].training_for("E1")
    assert (training.epochs, training.lr) == (7, 0.001)
    assert training.convergence.model_dump() == {"tolerance": 0.05, "patience": 3, "min_delta": 0.002}


def test_a_random_dual_prompt_context_is_reachable_from_toml(tmp_path):
    """TOML has no null: setting context_tokens alone must be enough."""
    registry, path = _load(tmp_path, VALID.replace('tuner = "vpt-shallow"\nparams = { num_tokens = 4 }', 'tuner = "dual-prompt"\nparams = { context_tokens = 4 }'))
    (plan,) = plan_experiments("demo", registry.suites["demo"], path, ["E1"])
    assert plan.error == "" and (plan.config.context_tokens, plan.config.context_init) == (4, None)


def test_a_run_recorded_with_relative_paths_resumes_them_from_its_config_files_folder(tmp_path):
    from vptbench.harness.planning import plan_from_manifest
    from vptbench.results.manifest import RunManifest

    meta = {
        "suite": "s", "seeds": [0], "plan": ["E1-seed0"], "status": "interrupted", "config_path": str(tmp_path / "project" / "benchmark.toml"),
        "config": {
            "model_name": "m", "model": {"source": "local", "path": "../models/tiny"},
            "dataset_name": "d", "dataset": {"source": "imagefolder", "path": "data", "class_names": ["a", "b"]},
            "experiments": {"E1": {"tuner": "zero-shot", "training": {"seeds": [0]}}},
        },
    }  # fmt: skip
    plan = plan_from_manifest(RunManifest.model_validate(meta))
    assert (plan.model.path, plan.dataset.path) == (str(tmp_path / "models" / "tiny"), str(tmp_path / "project" / "data"))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_registry(tmp_path / "absent.toml")


def test_model_and_dataset_can_be_swapped_for_a_run():
    registry, _ = load_registry(PACKAGED_CONFIG)
    _, suite = select_suite(registry, "paper", "vit-b16-random", "brain-mri-synthetic")
    assert (suite.model, suite.dataset) == ("vit-b16-random", "brain-mri-synthetic")
    with pytest.raises(UsageError, match="--dataset: Unknown dataset 'brain-mr'. Did you mean"):
        select_suite(registry, "paper", None, "brain-mr")


@pytest.mark.slow  # about 1 s at one thread: renders 800 images of 256 x 256
def test_synthetic_brain_mri_has_the_study_split_sizes():
    from vptbench.data.sources import BUILTIN_DATASETS

    raw = BUILTIN_DATASETS["synthetic-brain-mri"]()
    assert [len(raw[s][1]) for s in ("train", "test")] == [480, 320]
    assert sorted(set(raw["train"][1])) == [0, 1, 2, 3] and raw["train"][0][0].size == (256, 256)


def test_several_bad_params_are_named_in_one_line(tmp_path):
    registry, path = _load(tmp_path, VALID.replace("{ num_tokens = 4 }", '{ num_tokens = 0, dropuot = 0.1, hed = "x", extra = 1 }'))
    with pytest.raises(ConfigError) as error:
        plan_experiments("demo", registry.suites["demo"], path, ["E1"])
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: suites.demo.experiments.E1.params.")
    assert message.count("suites.demo.experiments.E1.params.") == 3 and message.endswith("(+1 more)")
    assert "num_tokens: Input should be greater than or equal to 1" in message and "dropuot: unknown key" in message
