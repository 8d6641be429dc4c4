"""Plugin discovery through entry points: broken, duplicate, invalid and disabled plugins."""

from __future__ import annotations

import json

import pytest

from vptbench import plugins
from vptbench.errors import PluginError


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Register a distribution's `vptbench.tuners` entry points by writing its metadata on sys.path."""

    def register(name: str, entry_points: dict[str, str]) -> None:
        info = tmp_path / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[vptbench.tuners]\n{lines}\n")
        plugins._scan.cache_clear()

    monkeypatch.syspath_prepend(str(tmp_path))
    yield register
    plugins._scan.cache_clear()


def test_builtins_register_through_the_entry_point_group():
    found = plugins.find_plugins()
    builtin = {name for name, plugin in found.items() if plugin.distribution == "vptbench"}
    assert builtin == {"zero-shot", "linear-probe", "vpt-shallow", "vpt-deep", "dual-prompt", "coop", "full-finetune"}
    assert all(plugins.load(found[name]).ok for name in builtin)


def test_discovery_imports_nothing(fake_distribution):
    fake_distribution("lazy-plugin", {"lazy": "module_that_does_not_exist:Tuner"})
    assert plugins.find_plugins()["lazy"].distribution == "lazy-plugin"  # found, not imported


def test_a_broken_plugin_is_reported_not_fatal(fake_distribution):
    fake_distribution("broken-plugin", {"broken": "module_that_does_not_exist:Tuner"})
    status = plugins.load(plugins.find_plugins()["broken"])
    assert not status.ok and "ModuleNotFoundError" in status.error and "module_that_does_not_exist" in status.error
    with pytest.raises(PluginError, match="Tuner 'broken' from broken-plugin is unusable"):
        plugins.load_tuner("broken")
    assert plugins.load_tuner("zero-shot")  # everyone else keeps working


def test_an_object_that_is_not_a_tuner_is_invalid(fake_distribution):
    fake_distribution("odd-plugin", {"odd": "collections:OrderedDict", "func": "json:dumps"})
    odd, func = plugins.load(plugins.find_plugins()["odd"]), plugins.load(plugins.find_plugins()["func"])
    assert "not a valid tuner" in odd.error and "has no `Config` pydantic model" in odd.error
    assert "is a function, not a class" in func.error


def test_a_tuner_with_the_wrong_constructor_is_invalid():
    from torch import nn

    from vptbench.protocol import TunerConfig, protocol_problems

    class TwoArguments(nn.Module):
        Config = TunerConfig

        def __init__(self, config, clip):
            super().__init__()

    assert protocol_problems(TwoArguments) == ["cannot be constructed as Tuner(config, clip, task)"]
    assert protocol_problems(plugins.load_tuner("vpt-deep")) == []


def test_a_name_two_distributions_claim_is_unusable_and_names_both_while_others_work(fake_distribution, cli, tiny_config):
    fake_distribution("copycat", {"extra": "json:dumps"})
    fake_distribution("lookalike", {"extra": "json:loads"})
    claimed_twice = r"Tuner 'extra' is registered 2 times: by .*(lookalike|copycat) 1.0 and by .*(copycat|lookalike) 1.0\. Uninstall all but one of them\."
    with pytest.raises(PluginError, match=claimed_twice):
        plugins.load_tuner("extra")
    assert plugins.load_tuner("linear-probe").__name__ == "LinearProbe"
    code, out, _ = cli("list", "--config", tiny_config, "--json")
    tuners = {t["name"]: t for t in json.loads(out)["tuners"]}
    assert code == 0 and tuners["extra"]["status"] == "broken" and tuners["linear-probe"]["status"] == "ok"


def test_a_built_in_keeps_its_name_when_a_plugin_claims_it(fake_distribution, cli, tiny_config, tmp_path):
    """Installing a package must not change, or break, what `zero-shot` means; `list` says why the
    plugin's tuner is not used."""
    fake_distribution("copycat", {"zero-shot": "json:dumps"})
    assert plugins.load_tuner("zero-shot").__name__ == "ZeroShot"
    code, out, _ = cli("list", "--config", tiny_config, "--json")
    rows = [t for t in json.loads(out)["tuners"] if t["name"] == "zero-shot"]
    ignored = "ignored: 'zero-shot' is a built-in tuner's name; copycat must register its tuner under another name"
    assert code == 0 and [(t["distribution"], t["status"]) for t in rows] == [("vptbench", "ok"), ("copycat", "ignored")] and rows[1]["error"] == ignored
    code, out, _ = cli("list", "--config", tiny_config)
    assert code == 0 and ignored in " ".join(out.replace("│", " ").split())
    assert cli("run", "E1", "--config", tiny_config, "--output", tmp_path, "--quiet")[0] == 0


def test_third_party_plugins_can_be_switched_off(fake_distribution, monkeypatch):
    fake_distribution("copycat", {"zero-shot": "json:dumps", "extra": "json:dumps"})
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    found = plugins.find_plugins()
    assert "extra" not in found and found["zero-shot"].distribution == "vptbench"


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_list_and_run_with_a_broken_plugin(fake_distribution, cli, tiny_config, tmp_path):
    fake_distribution("broken-plugin", {"broken": "module_that_does_not_exist:Tuner"})
    code, out, _ = cli("list", "--config", tiny_config, "--json")
    assert code == 0
    broken = {t["name"]: t for t in json.loads(out)["tuners"]}["broken"]
    assert broken["status"] == "broken" and broken["distribution"] == "broken-plugin"
    config = tiny_config.read_text() + '[suites.s.experiments.E9]\ntuner = "broken"\n'
    tiny_config.write_text(config)
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path / "out", "--quiet", "--json")
    assert code == 1
    statuses = {r["experiment"]: (r["status"], r["error"]) for r in json.loads(out)["runs"]}
    assert statuses["E1"][0] == statuses["E2"][0] == "ok"
    assert statuses["E9"][0] == "failed" and "module_that_does_not_exist" in statuses["E9"][1]
    (run_dir,) = (tmp_path / "out").iterdir()
    log = (run_dir / "errors.log").read_text()
    assert log.startswith("== E9-seed0\nTraceback") and "ModuleNotFoundError: No module named 'module_that_does_not_exist'" in log
    assert "E9 seed 0 failed: Tuner 'broken' from broken-plugin is unusable" in err
    code, out, err = cli("run", "--all", "--config", tiny_config, "--dry-run")
    assert code == 1 and "E9 failed: Tuner 'broken' from broken-plugin is unusable" in err
    code, out, err = cli("run", "E9", "--config", tiny_config, "--output", tmp_path / "only-broken")
    assert code == 2 and err.startswith("error: no selected experiment can run; E9: Tuner 'broken' from broken-plugin is unusable")
    assert not (tmp_path / "only-broken").exists() and out == ""  # nothing loaded, no banner, nothing written


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_shipped_plugins_run_from_a_toml_experiment_like_builtins(cli, tmp_path, tiny_model_dir, image_folder):
    pytest.importorskip("vptbench_lora")
    pytest.importorskip("vptbench_bitfit")
    from conftest import tiny_suite_toml

    experiments = (
        '[suites.s.experiments.L1]\ntuner = "lora"\nparams = { rank = 2 }\n'
        '[suites.s.experiments.B1]\ntuner = "bitfit"\n'
    )
    config = tmp_path / "bench.toml"
    config.write_text(tiny_suite_toml(tiny_model_dir, image_folder, experiments))
    code, out, err = cli("list", "--config", config, "--json")
    listed = {t["name"]: t for t in json.loads(out)["tuners"]}
    assert listed["lora"]["distribution"] == "vptbench-lora" and listed["bitfit"]["distribution"] == "vptbench-bitfit"
    code, out, err = cli("run", "--all", "--config", config, "--output", tmp_path / "out", "--quiet", "--json")
    assert code == 0, err
    runs = {r["experiment"]: r for r in json.loads(out)["runs"]}
    assert runs["L1"]["trainable_params"] == 2 * 2 * 2 * (64 + 64) + 32 * 3 + 3  # rank 2 on q and v, 2 layers, head
    assert runs["B1"]["status"] == "ok"


def test_a_typo_in_params_is_rejected_at_any_depth_unless_a_model_takes_unknown_keys(fake_distribution, tmp_path, tiny_config):
    """pydantic's default drops unknown keys, in nested tables too: a misspelt param would silently
    run the default. A model that declares it takes unknown keys keeps them."""
    from vptbench.errors import ConfigError
    from vptbench.harness.planning import plan_experiments, select_suite
    from vptbench.registry import load_registry

    (tmp_path / "loose_tuner.py").write_text(
        "from pydantic import BaseModel, ConfigDict\n"
        "from vptbench.protocol import TunerConfig\n"
        "from vptbench.tuners.linear_probe import LinearProbe\n\n"
        "class Schedule(BaseModel):\n"
        "    warmup: int = 0\n\n"
        "class Extras(BaseModel):\n"
        "    model_config = ConfigDict(extra='allow')\n\n"
        "class LooseTuner(LinearProbe):\n"
        "    class Config(BaseModel):\n"
        "        bias: bool = True\n\n"
        "class NestedTuner(LinearProbe):\n"
        "    class Config(TunerConfig):\n"
        "        bias: bool = True\n"
        "        schedules: list[Schedule] = []\n\n"
        "class OpenTuner(LinearProbe):\n"
        "    class Config(TunerConfig):\n"
        "        bias: bool = True\n"
        "        extras: Extras | None = None\n"
    )
    fake_distribution("loose", {"loose": "loose_tuner:LooseTuner", "nested": "loose_tuner:NestedTuner", "open": "loose_tuner:OpenTuner"})
    cases = (
        ("loose", "{ bais = false }", r"suites\.s\.experiments\.E9\.params\.bais: unknown key"),
        ("loose", "{ bias = false }", None),
        ("nested", "{ schedules = [{ warmup = 2 }, { wramup = 3 }] }", r"suites\.s\.experiments\.E9\.params\.schedules\.1\.wramup: unknown key"),
        ("nested", "{ schedules = [{ warmup = 2 }] }", None),
        ("open", "{ extras = { anything = 1 } }", None),
    )
    plans = {}
    for tuner, params, error in cases:
        tiny_config.write_text(tiny_config.read_text().split("[suites.s.experiments.E9]")[0] + f'[suites.s.experiments.E9]\ntuner = "{tuner}"\nparams = {params}\n')
        registry, path = load_registry(tiny_config)
        name, suite = select_suite(registry, "s")
        if error:
            with pytest.raises(ConfigError, match=error):
                plan_experiments(name, suite, path, ["E9"])
        else:
            (plans[tuner],) = plan_experiments(name, suite, path, ["E9"])
            assert type(plans[tuner].config) is plans[tuner].tuner.Config
    assert plans["loose"].config.bias is False and plans["nested"].config.schedules[0].warmup == 2
    assert plans["open"].config.extras.anything == 1  # the open model kept its unknown key
