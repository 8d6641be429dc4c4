"""The shipped default is meaningful: on the built-in model and data, every trained strategy beats zero-shot."""

from __future__ import annotations

import json

import pytest

from vptbench.registry.load import PACKAGED_CONFIG

pytestmark = pytest.mark.slow  # the whole demo suite, six strategies


def test_every_trained_strategy_beats_zero_shot_on_the_demo(cli, tmp_path):
    code, out, err = cli("run", "--all", "--config", PACKAGED_CONFIG, "--epochs", "6", "--output", tmp_path, "--quiet", "--json", "--executor", "process")
    assert code == 0, err
    accuracy = {run["experiment"]: run["test_accuracy"] for run in json.loads(out)["runs"]}
    assert set(accuracy) == {"E1", "E2", "E3", "E4", "E5", "E6"}
    assert 0.5 < accuracy["E1"] < 0.85  # far above chance (0.1), below what tuning reaches
    assert all(accuracy[e] > accuracy["E1"] + 0.05 for e in ("E2", "E3", "E4", "E5", "E6")), accuracy
