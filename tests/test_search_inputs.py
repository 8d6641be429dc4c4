"""A suite's `search` table checked before any model loads: each mistake is one line naming its
TOML path, exit 2, from `list` and from `run --dry-run` alike; a good space comes out typed by the
setting it tunes; `list` and the dry run show the space, the budget and the trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_suite_toml

from vptbench.harness.planning import plan_from_registry
from vptbench.registry.schema import Range

EXPERIMENTS = """
[suites.s.experiments.E1]
tuner = "zero-shot"
[suites.s.experiments.E2]
tuner = "linear-probe"
[suites.s.experiments.E3]
tuner = "vpt-shallow"
"""
NOWHERE = Path("/nonexistent")  # nothing is loaded: a bad search is refused before the model and data are looked at


def _registry(tmp_path: Path, search: str, experiments: str = EXPERIMENTS, model: Path = NOWHERE, data: Path = NOWHERE) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(tiny_suite_toml(model, data, experiments) + (f"[suites.s.search]\n{search}\n" if search else ""))
    return path


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("vptbench.harness.dry_run.load_model", refuse)
    monkeypatch.setattr("vptbench.models.load_model", refuse)


SUITE = "suites.s.search"
BAD = [
    ("space = {}", "", f"{SUITE}.space: nothing to search: name a training setting (such as lr) or a tuner param under `params`"),
    ("space = { lr = { low = 0.1, high = 0.01 } }", "", f"{SUITE}.space.lr: low (0.1) must be below high (0.01)"),
    ("space = { lr = { low = 0.1, high = 0.1 } }", "", f"{SUITE}.space.lr: low (0.1) must be below high (0.1)"),
    ("space = { lr = { low = 0, high = 0.1, log = true } }", "", f"{SUITE}.space.lr: a log range must stay above 0 (low is 0)"),
    ("space = { lrr = [0.1] }", "", f"{SUITE}.space.lrr: not a training setting a search can tune (did you mean 'lr'? those are optimizer, lr,"),
    ("space = { lr = [0.1] }", "search = { space = { params = { nope = [1, 2] } } }", "suites.s.experiments.E3.search.space.params.nope: not a param of tuner 'vpt-shallow' (its params: num_tokens,"),
    ('space = { weight_decay = [1, "a"] }', "", f"{SUITE}.space.weight_decay: a list of choices mixes numbers and text"),
    ("trials = 0\nspace = { lr = [0.1] }", "", f"{SUITE}.trials: Input should be greater than or equal to 1"),
    ('sampler = "grid"\nspace = { lr = { low = 0.001, high = 0.1 } }', "", f"{SUITE}.space.lr: a grid sampler takes lists of choices or whole-number ranges, not a continuous range"),
    ("space = { lr = [-1.0] }", "", f"{SUITE}.space.lr: -1.0 is refused (Input should be greater than 0)"),
    ("space = { lr = [0.1] }", "search = { space = { lr = [-1.0] } }", "suites.s.experiments.E3.search.space.lr: -1.0 is refused (Input should be greater than 0)"),
    ("space = { epochs = { low = 1.5, high = 4.0 } }", "", f"{SUITE}.space.epochs: 1.5 is refused (Input should be a valid integer, got a number with a fractional part)"),
    ("space = { epochs = { low = 1.0, high = 4.0 } }", "", f"{SUITE}.space.epochs: takes whole numbers: write low and high without a decimal point"),
    ("space = { params = { nope = [1, 2] } }", "", f"{SUITE}.space.params.nope: a param of none of the suite's tuners"),
    ("space = { params = { num_tokens = [0, 4] } }", "", f"{SUITE}.space.params.num_tokens: 0 is refused"),
    ("space = { lr = 0.1 }", "", f"{SUITE}.space.lr: a dimension is a list of choices or a range table (low, high and optionally log)"),
    ("space = { lr = { low = 0.001, high = 0.1, lg = true } }", "", f"{SUITE}.space.lr.lg: unknown key"),
    ('space = { lr = [0.1, "a"] }', "", f"{SUITE}.space.lr: a list of choices mixes numbers and text"),
    ('space = { lr = { low = "a", high = 0.1 } }', "", f'{SUITE}.space.lr.low: Input should be a number (got "a")'),
    ("space = { lr = [0.1, [1]] }", "", f"{SUITE}.space.lr.1: Input should be true/false, a number or text (got [1])"),
]


@pytest.mark.parametrize("command", [("list",), ("run", "--all", "--dry-run")], ids=["list", "dry-run"])
@pytest.mark.parametrize(("search", "experiment", "expected"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_search_is_one_line_naming_its_toml_path(cli, tmp_path, no_model, command, search, experiment, expected):
    config = _registry(tmp_path, search, EXPERIMENTS + (experiment + "\n" if experiment else ""))
    code, out, err = cli(*command, "--config", config)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1, err
    assert err.strip().startswith(f"error: {config}: {expected}"), err


def _searches(tmp_path: Path, search: str, experiments: str = EXPERIMENTS) -> dict:
    plan = plan_from_registry(_registry(tmp_path, search, experiments), None, None, None)
    return {e.id: e.search for e in plan.experiments}


def test_ranges_come_out_typed_by_the_setting_they_tune(tmp_path):
    search = _searches(tmp_path, "space = { lr = { low = 1, high = 3, log = true }, epochs = { low = 2, high = 5 }, weight_decay = [0, 1e-4] }")["E2"]
    assert search is not None
    lr, epochs = search.training["lr"], search.training["epochs"]
    assert isinstance(lr, Range) and (lr.low, lr.high) == (1.0, 3.0) and type(lr.low) is float and type(lr.high) is float and not lr.integer
    assert isinstance(epochs, Range) and type(epochs.low) is int and type(epochs.high) is int and epochs.integer
    assert search.training["weight_decay"] == [0, 1e-4]  # integers and decimals are numbers alike


def test_a_grid_runs_each_of_its_points_once_unless_trials_are_set(tmp_path):
    space = "space = { weight_decay = [0, 1e-4], epochs = { low = 2, high = 4 }, params = { num_tokens = [4, 8] } }"
    searches = _searches(tmp_path, f'sampler = "grid"\n{space}')
    assert searches["E2"] is not None and searches["E3"] is not None
    assert searches["E2"].trials == len(searches["E2"].grid()) == 6  # the suite's num_tokens is vpt-shallow's, not linear-probe's
    assert searches["E3"].trials == len(searches["E3"].grid()) == 12
    assert _searches(tmp_path, f'sampler = "grid"\ntrials = 4\n{space}')["E3"].trials == 4


def test_a_suite_param_applies_to_the_tuners_that_have_it_the_others_run_untuned(tmp_path):
    searches = _searches(tmp_path, "space = { params = { num_tokens = [4, 8] } }")
    assert searches["E1"] is None and searches["E2"] is None
    assert searches["E3"] is not None and searches["E3"].params == {"num_tokens": [4, 8]}


def test_list_shows_the_space_and_budget_of_a_searched_suite(cli, tmp_path):
    search = "trials = 5\nfinal_seeds = [0, 1]\nparallel = 2\nspace = { lr = { low = 1e-4, high = 3e-2, log = true }, params = { num_tokens = [4, 8] } }"
    experiments = EXPERIMENTS + "[suites.s.experiments.E4]\ntuner = \"linear-probe\"\ntraining = { epochs = 7 }\nsearch = { space = { epochs = [2, 9] } }\n"
    config = _registry(tmp_path, search, experiments)
    code, out, err = cli("list", "--config", config)
    assert code == 0, err
    assert "s (default) (search: 5 trials)" in out
    assert "Search of suite 's'" in out
    lines = out[out.index("Search of suite"):].splitlines()
    e3 = next(line for line in lines if "│ E3 " in line)
    assert "lr 0.0001–0.03 (log)" in e3 and "5" in e3 and "tpe" in e3 and "median pruning" in e3 and "0, 1" in e3 and "≤ 15 epochs" in e3  # 5 trials × 3 epochs
    e4 = next(line for line in lines if "│ E4 " in line)
    assert "≤ 45 epochs" in e4  # a searched `epochs` bounds the budget by its largest value: 5 × 9
    code, out, _ = cli("list", "--config", config, "--json")
    rows = {row["id"]: row for row in json.loads(out)["experiments"]}
    assert rows["E3"]["search"]["params"] == {"num_tokens": [4, 8]} and rows["E3"]["search"]["trials"] == 5
    assert rows["E2"]["search"]["params"] == {} and rows["E4"]["search"]["training"]["epochs"] == [2, 9]
    assert json.loads(out)["suites"][0]["search"]["trials"] == 5


def test_list_of_an_unsearched_suite_has_no_search(cli, tmp_path):
    code, out, err = cli("list", "--config", _registry(tmp_path, ""), "--json")
    assert code == 0, err
    assert all(row["search"] is None for row in json.loads(out)["experiments"]) and json.loads(out)["suites"][0]["search"] is None
    code, out, _ = cli("list", "--config", _registry(tmp_path, ""))
    assert "Search of suite" not in out and "(search" not in out


def test_dry_run_shows_the_trials_then_the_final_runs(cli, tmp_path, tiny_model_dir, image_folder):
    search = 'sampler = "grid"\npruner = "none"\nfinal_seeds = [0, 1, 2]\nspace = { weight_decay = [0, 1e-4], epochs = { low = 2, high = 4 } }'
    config = _registry(tmp_path, search, model=tiny_model_dir, data=image_folder)
    code, out, err = cli("run", "--all", "--dry-run", "--config", config)
    assert code == 0, err
    text = " ".join(out.split())  # unwrapped
    assert "E1: not searched: nothing to train, then 3 runs (seeds 0, 1, 2)" in text
    assert (
        "E2: 6 trials (grid, no pruning, one at a time, ≤ 24 epochs) over weight_decay {0, 0.0001}, epochs 2–4 — grid of 6 points: "
        "weight_decay=0 epochs=2; weight_decay=0 epochs=3; weight_decay=0 epochs=4; …, then 3 final runs (seeds 0, 1, 2)"
    ) in text
    code, out, err = cli("run", "--all", "--dry-run", "--config", config, "--seeds", "5,6", "--json")
    rows = {row["experiment"]: row for row in json.loads(out)["experiments"]}
    assert rows["E2"]["search"]["trials"] == 6 and rows["E2"]["search"]["final_seeds"] == [5, 6] and rows["E2"]["search_note"] == ""
    assert rows["E1"]["search_note"] == "not searched: nothing to train"
