"""The command line end to end on local copies: runs, reports parsed back, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_suite_toml


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_run_all_writes_reports_that_parse_back(cli, tiny_config, tmp_path):
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path / "results", "--quiet")
    assert code == 0, err
    (run_dir,) = (tmp_path / "results").iterdir()
    assert run_dir.name.startswith("s-")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "finished" and meta["seeds"] == [0] and meta["schema_version"] == 1
    assert meta["config"]["dataset"]["class_names"] == ["blue", "green", "red"]
    assert meta["environment"]["packages"]["torch"]
    frame = pd.read_csv(run_dir / "results.csv")
    assert list(frame["experiment"]) == ["E1", "E2"] and set(frame["status"]) == {"ok"}
    for _, row in frame.iterrows():
        record = json.loads((run_dir / "runs" / f"{row['experiment']}-seed0.json").read_text())
        assert row["test_accuracy"] == pytest.approx(record["test_accuracy"])
        assert row["trainable_params"] == record["trainable_params"]
    from vptbench.reporting.tables import INTEGER_COLUMNS

    for name in ("results.csv", "summary.csv"):  # counts stay whole where another row has none (E1 never converges)
        rows = list(csv.DictReader((run_dir / name).read_text().splitlines()))
        assert all(row[c].isdigit() for row in rows for c in INTEGER_COLUMNS if row.get(c)), name
    assert rows[0]["epochs_to_converge_mean"] == "" and rows[1]["trainable_params"] == "99"
    assert next(csv.DictReader((run_dir / "results.csv").read_text().splitlines()))["epochs_to_converge"] == ""
    history = pd.read_csv(run_dir / "history" / "E2-seed0.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    report = (run_dir / "report.md").read_text()
    summary = report.split("## Summary")[1].split("##")[0]
    first_cells = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("|")]
    assert first_cells[0] == "Experiment" and first_cells[2:] == ["E1", "E2"]
    assert "all 2 runs ok" in err


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_report_regenerates_without_retraining(cli, tiny_config, tmp_path, monkeypatch):
    results = tmp_path / "results"
    assert cli("run", "E2", "--config", tiny_config, "--output", results, "--quiet")[0] == 0
    (run_dir,) = results.iterdir()
    (run_dir / "report.md").unlink()
    (run_dir / "results.csv").unlink()
    runs = {p.name: p.read_bytes() for p in (run_dir / "runs").iterdir()}
    monkeypatch.setattr("vptbench.harness.guarded.run_one", lambda *args: pytest.fail("report retrained"))
    code, out, err = cli("report", "--output", results, "--format", "md")
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in (run_dir / "runs").iterdir()} == runs
    assert (run_dir / "report.md").is_file() and "E2" in out
    assert not (run_dir / "results.csv").exists()  # --format md writes the report and its plots only
    assert f"in {run_dir}: report.md, " in " ".join(err.split())
    code, _, _ = cli("report", run_dir, "--format", "json")
    assert code == 0 and json.loads((run_dir / "report.json").read_text())["runs"][0]["experiment"] == "E2"
    code, _, _ = cli("report", run_dir, "--format", "csv")
    assert code == 0 and pd.read_csv(run_dir / "results.csv").shape[0] == 1
    written = {p.name: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    code, _, err = cli("report", run_dir, "--output", tmp_path / "elsewhere")  # e.g. a colleague's read-only results
    assert code == 0, err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == written  # the run directory is left as it was
    (copy,) = (tmp_path / "elsewhere").iterdir()
    assert copy.name.startswith(f"{run_dir.name.split('-')[0]}-report-") and f"wrote 8 files in {copy}" in " ".join(err.split())
    assert pd.read_csv(copy / "results.csv").equals(pd.read_csv(run_dir / "results.csv")) and (copy / "report.md").is_file()
    code, _, err = cli("run", "--resume", copy)
    assert code == 2 and f"--resume: '{copy}' is a copy of {run_dir}'s report; resume that" in " ".join(err.split())


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_seeds_epochs_and_json_summary(cli, tiny_config, tmp_path):
    code, out, err = cli("run", "E2", "--config", tiny_config, "--output", tmp_path, "--seeds", "0-1", "--epochs", "2", "--quiet", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [(r["experiment"], r["seed"]) for r in summary["runs"]] == [("E2", 0), ("E2", 1)]
    histories = sorted(tmp_path.glob("*/history/*.csv"))
    assert [p.name for p in histories] == ["E2-seed0.csv", "E2-seed1.csv"]
    assert all(pd.read_csv(p)["epoch"].tolist() == [1, 2] for p in histories)


@pytest.mark.slow  # over 1 s at one thread: end to end runs
def test_a_log_gets_a_line_per_run_and_per_stretch_of_epochs(cli, tiny_config, tmp_path, monkeypatch):
    """Off a terminal (a CI job, `2>run.log`) Rich bars would show nothing until the end."""
    monkeypatch.setattr("vptbench.progress.LOG_EVERY_SECONDS", 0.0)  # every epoch gets its line
    code, _, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path, "--epochs", "2")
    assert code == 0, err
    loading, *lines = [line.split(" ", 1)[1] for line in err.splitlines() if line[:2].isdigit()]  # after the time of day
    assert loading == "loading the model and decoding the data"
    assert [line.split(":")[0] for line in lines] == ["[1/2] E1 seed 0", "E2 seed 0", "E2 seed 0", "[2/2] E2 seed 0"]
    assert lines[0].startswith("[1/2] E1 seed 0: test acc ") and lines[1].startswith("E2 seed 0: epoch 1/2 · loss ")
    assert lines[3].startswith("[2/2] E2 seed 0: test acc ") and " · 2 epochs in " in lines[3]
    (run_dir,) = tmp_path.glob("s-*")
    (run_dir / "runs" / "E2-seed0.json").unlink()
    code, _, err = cli("run", "--resume", run_dir)
    assert code == 0 and [line.split(" ", 1)[1].split(":")[0] for line in err.splitlines() if line[:2].isdigit() and "[" in line] == ["[2/2] E2 seed 0"]
    code, _, err = cli("run", "E2", "--config", tiny_config, "--output", tmp_path / "quiet", "--epochs", "2", "--quiet")
    assert code == 0 and "seed 0" not in err and "loading" not in err


def test_run_json_records_the_registry_by_its_absolute_path(cli, tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_config.parent)
    assert cli("run", "E1", "--config", "benchmark.toml", "--output", tmp_path / "out", "--quiet")[0] == 0
    (run_json,) = (tmp_path / "out").glob("*/run.json")
    assert json.loads(run_json.read_text())["config_path"] == str(tiny_config)


def test_list_shows_builtin_tuners_and_experiments(cli, tiny_config):
    code, out, _ = cli("list", "--config", tiny_config, "--json")
    assert code == 0
    listing = json.loads(out)
    names = {t["name"]: t for t in listing["tuners"]}
    assert {"zero-shot", "linear-probe", "vpt-shallow", "vpt-deep", "dual-prompt", "full-finetune"} <= set(names)
    assert names["zero-shot"]["distribution"] == "vptbench" and names["zero-shot"]["status"] == "ok"
    assert [e["id"] for e in listing["experiments"]] == ["E1", "E2"]
    assert {e["status"] for e in listing["experiments"]} == {"ok"}


def test_list_flags_an_experiment_with_bad_params(cli, tiny_config, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(tiny_config).read_text().replace('tuner = "linear-probe"', 'tuner = "linear-probe"\nparams = { bias = "sometimes" }'))
    code, out, err = cli("list", "--config", bad, "--json")
    assert code == 2 and f"error: {bad}: suites.s.experiments.E2.params.bias: " in err
    statuses = {e["id"]: e["status"] for e in json.loads(out)["experiments"]}
    assert statuses == {"E1": "ok", "E2": "invalid"}
    bad.write_text(bad.read_text().replace('tuner = "zero-shot"', 'tuner = "zero-shot"\nparams = { scale = 2 }'))
    for args in (["list"], ["run", "--all", "--output", tmp_path], ["run", "E2", "E1", "--output", tmp_path]):  # every invalid one at once
        code, _, err = cli(*args, "--config", bad)
        message = " ".join(err.split())
        assert code == 2 and f"error: {bad}: 2 experiments are invalid: suites.s.experiments." in message, err
        assert "E1.params.scale: unknown key" in message and "E2.params.bias: " in message and len(err.strip().splitlines()) <= 3


def test_list_shows_every_suite_and_checks_the_chosen_one(cli, tiny_config):
    tiny_config.write_text(tiny_config.read_text() + '[suites.other]\nmodel = "tiny"\ndataset = "colors"\ndescription = "a second look"\n[suites.other.experiments.X1]\ntuner = "zero-shot"\n')
    code, out, _ = cli("list", "--config", tiny_config, "--json")
    listing = json.loads(out)
    assert code == 0 and [(s["name"], s["default"], s["experiments"]) for s in listing["suites"]] == [("s", True, ["E1", "E2"]), ("other", False, ["X1"])]
    code, out, _ = cli("list", "--config", tiny_config, "--suite", "other")
    assert code == 0 and "s (default)" in out and "a second look" in out and "Suite 'other' (tiny on colors)" in out and "X1" in out


def _write(tmp_path, text):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_bad_inputs_get_one_line_and_exit_code_2(cli, tmp_path, tiny_model_dir, image_folder):
    good = tiny_suite_toml(tiny_model_dir, image_folder)
    cases = {
        "malformed TOML": good.replace("[models.tiny]", "[models.tiny"),
        "unknown key": good.replace('source = "local"', 'source = "local"\nrevison = "x"'),
        "Did you mean 'zero-shot'": good.replace('tuner = "zero-shot"', 'tuner = "zeroshot"'),
        "local model folder": good.replace(str(tiny_model_dir), str(tmp_path / "absent")),
        "image folder": good.replace(str(image_folder), str(tmp_path / "absent")),
    }
    for expected, text in cases.items():
        code, out, err = cli("run", "--all", "--config", _write(tmp_path, text), "--output", tmp_path / "out", "--quiet")
        assert code == 2, (expected, err)
        assert expected in err and "Traceback" not in err + out
        assert err.strip().splitlines() == [err.strip()] and err.startswith("error: "), err
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--device", "tpu"], "--device: 'tpu' is not a device vptbench runs on"),
        (["--executor", "dask"], "--executor (or VPTBENCH_EXECUTOR): 'dask' is not one of process, inline, ray"),
        (["--address", "auto"], "--address goes with --executor ray"),
    ],
)
def test_a_dry_run_refuses_the_options_a_real_run_refuses(cli, tiny_config, options, expected):
    code, out, err = cli("run", "E1", "--config", tiny_config, "--dry-run", *options)
    assert code == 2 and err.startswith(f"error: {expected}") and len(err.strip().splitlines()) == 1 and out == "", err


def test_relative_paths_are_relative_to_the_config_file(cli, tmp_path, tiny_model_dir, image_folder, monkeypatch):
    """Wherever the run starts or resumes from; run.json records them absolute."""
    project = tmp_path / "project"
    project.mkdir()
    config = project / "benchmark.toml"
    config.write_text(tiny_suite_toml(Path(os.path.relpath(tiny_model_dir, project)), Path(os.path.relpath(image_folder, project))))
    monkeypatch.chdir(tmp_path)  # not the config's folder: the relative paths would miss from here
    code, _, err = cli("run", "E1", "--config", config, "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    (run_dir,) = (tmp_path / "out").iterdir()
    recorded = json.loads((run_dir / "run.json").read_text())["config"]
    assert (recorded["model"]["path"], recorded["dataset"]["path"]) == (str(tiny_model_dir), str(image_folder))


def test_hub_model_while_offline_says_so(cli, tmp_path, image_folder, tiny_model_dir):
    text = tiny_suite_toml(tiny_model_dir, image_folder).replace(f'source = "local"\npath = "{tiny_model_dir}"', 'source = "hub"\nid = "openai/clip-vit-base-patch16"')
    code, _, err = cli("run", "--all", "--config", _write(tmp_path, text), "--output", tmp_path / "out", "--quiet")
    assert code == 2
    assert "offline" in err and 'source = "local"' in err.replace("\n", "")


def test_run_needs_ids_or_all(cli, tiny_config):
    code, _, err = cli("run", "--config", tiny_config)
    assert code == 2 and "--all" in err


@pytest.mark.slow  # a fresh interpreter
def test_help_imports_no_torch():
    code = "import sys\nfrom vptbench.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "False"


def _heavy_imports(*args: str) -> tuple[int, list[str]]:
    """The exit code of `vptbench ARGS` in a fresh interpreter, and the heavy libraries it imported
    (built-in strategies only: what a third-party plugin imports is its own affair)."""
    code = (
        "import sys\nfrom vptbench.cli import app\ntry:\n    app([" + ", ".join(repr(str(a)) for a in args) + "])\nexcept SystemExit as e:\n    print(e.code)\n"
        "print('imported:', *[m for m in ('torch', 'transformers', 'datasets', 'matplotlib', 'pandas') if m in sys.modules])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VPTBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    exit_code, imported = result.stdout.strip().splitlines()[-2:]
    return int(exit_code), imported.split()[1:]


@pytest.mark.slow  # fresh interpreters
def test_checks_that_need_no_model_come_before_the_heavy_imports(tiny_config, tmp_path):
    """Each of these took 33-41 s on a busy machine to print one line: torch and transformers first."""
    (tmp_path / "file").write_text("")
    for args in (["run"], ["run", "E9", "--config", tiny_config], ["run", "--all", "--config", tiny_config, "--output", tmp_path / "file" / "x"],
                 ["list", "--config", tmp_path / "missing.toml"], ["run", "--all", "--config", tiny_config, "--executor", "dask"]):  # fmt: skip
        assert _heavy_imports(*args) == (2, []), args
    code, imported = _heavy_imports("list", "--config", tiny_config)  # the built-in strategies are torch modules: no more
    assert code == 0 and "transformers" not in imported and "pandas" not in imported


@pytest.mark.slow  # the CLI in a subprocess
@pytest.mark.parametrize(("bars", "shown"), [(None, False), ("0", True)])
def test_library_progress_bars_give_way_to_ours(tiny_config, tmp_path, bars, shown):
    """`datasets` is quieted through its environment (it is imported only for Hub and folder data);
    a user who asks for its bars still gets them."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}  # no cached split: it is generated
    if bars is not None:
        env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = bars
    command = [sys.executable, "-m", "vptbench.cli", "run", "E1", "--config", str(tiny_config), "--output", str(tmp_path / "out"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert ("Generating train split" in result.stderr) == shown


@pytest.mark.slow  # about 1 s at one thread: benches every strategy
def test_bench_times_each_strategy_and_keeps_the_others_when_one_fails(cli, tiny_config, monkeypatch):
    args = ("bench", "--config", tiny_config, "--suite", "s", "--model", "tiny", "--device", "cpu", "--batch-size", "4", "--steps", "2", "--warmup", "1", "--json")
    code, out, err = cli(*args)
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [(r["experiment"], r["mode"], r["precision"]) for r in rows] == [("E1", "forward", "fp32"), ("E2", "forward", "fp32")]
    assert [line.split(" ", 1)[1].split(":")[0] for line in err.splitlines()] == ["loading tiny to time 2 strategies of suite 's'", "[1/2] E1 (zero-shot)", "[2/2] E2 (linear-probe)"]
    assert rows[0]["gflops_per_image"] == rows[1]["gflops_per_image"] > 0  # the same frozen forward, counted twice
    for r in rows:
        assert r["achieved_tflops"] == pytest.approx(r["gflops_per_image"] * r["images_per_second"] / 1e3)
        assert r["images_per_second"] == pytest.approx(4 / (r["step_ms"] / 1e3)) and r["mfu"] is None and r["peak_tflops"] is None

    from vptbench.harness import throughput

    real = throughput.measure

    def e1_out_of_memory(plan, *rest, **kwargs):
        if plan.id == "E1":
            raise RuntimeError("CUDA out of memory\nsecond line")
        return real(plan, *rest, **kwargs)

    monkeypatch.setattr(throughput, "measure", e1_out_of_memory)
    code, out, err = cli(*args)
    rows = json.loads(out)["rows"]
    assert code == 1 and rows[0] == {"experiment": "E1", "tuner": "zero-shot", "error": "RuntimeError: CUDA out of memory"}
    assert "[1/2] E1 (zero-shot): failed: RuntimeError: CUDA out of memory" in err and "[2/2] E2 (linear-probe): " in err
    assert rows[1]["experiment"] == "E2" and rows[1]["images_per_second"] > 0
    code, out, err = cli(*args[:-1])  # the table: the failed row marked, its reason under it
    assert code == 1 and "E1 (zero-shot): RuntimeError: CUDA out of memory" in err and "1 of 2 strategies could not be timed" in err
    statuses = {cells[1].strip(): cells[-2].strip() for cells in (line.split("│") for line in out.splitlines()) if len(cells) > 2}
    assert statuses == {"E1": "failed", "E2": "ok"}
    assert "Throughput on cpu — tiny, batch 4, fp32" in out  # "auto" as resolved


def test_dry_run_counts_parameters_without_data_or_a_run_directory(cli, tiny_config, tmp_path):
    code, out, err = cli("run", "--all", "--config", tiny_config, "--output", tmp_path / "out", "--dry-run", "--json")
    assert code == 0, err
    planned = json.loads(out)
    assert (planned["suite"], planned["seeds"]) == ("s", [0])
    rows = {row["experiment"]: row for row in planned["experiments"]}
    assert (rows["E1"]["trainable_params"], rows["E2"]["trainable_params"]) == (0, 32 * 3 + 3)  # projection 32 -> 3 classes
    assert rows["E1"]["total_params"] + 99 == rows["E2"]["total_params"]
    assert not (tmp_path / "out").exists()
    code, out, _ = cli("run", "--all", "--config", tiny_config, "--dry-run", "--seeds", " 0, 2 - 3 ")  # what an odd value meant
    assert code == 0 and "Each experiment would run with 3 seeds: 0, 2, 3" in out


def test_bench_in_fp16_on_a_cpu_says_what_the_figures_are_worth(cli, tiny_config):
    args = ("bench", "E2", "--config", tiny_config, "--suite", "s", "--model", "tiny", "--device", "cpu", "--batch-size", "2", "--steps", "1", "--warmup", "0")
    code, _, err = cli(*args, "--precision", "fp16")
    assert code == 0 and "note: fp16 on a CPU runs slow emulated kernels" in err
    assert "note:" not in cli(*args, "--precision", "fp32")[2]


@pytest.mark.slow  # over 1 s: benches every strategy
def test_bench_defaults_work_in_a_users_own_registry(cli, tiny_config):
    """No `paper` suite, no declared random ViT-B/16: the default suite's strategies at ViT-B/16 geometry."""
    code, out, err = cli("bench", "E2", "--config", tiny_config, "--device", "cpu", "--batch-size", "1", "--steps", "1", "--warmup", "0", "--json")
    assert code == 0, err
    timed = json.loads(out)
    (row,) = timed["rows"]
    assert timed["model"] == "vit-b16-random" and (row["experiment"], row["tuner"]) == ("E2", "linear-probe")
    assert row["trainable_params"] == 512 * 3 + 3  # ViT-B/16's 512-d projection to the registry's 3 classes


def test_a_registry_without_default_suite_uses_its_first(cli, tiny_config):
    tiny_config.write_text(tiny_config.read_text().replace('default_suite = "s"\n', ""))
    code, out, err = cli("list", "--config", tiny_config, "--json")
    assert code == 0, err
    assert json.loads(out)["suite"] == "s"


def test_version(cli):
    from importlib.metadata import version

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"vptbench {version('vptbench')}"


@pytest.mark.slow  # torch.compile
def test_compile_flags_override_every_experiment_and_reach_its_record(cli, tiny_config, tiny_model_dir, image_folder, tmp_path):
    code, _, err = cli("run", "E1", "E2", "--config", tiny_config, "--output", tmp_path, "--epochs", "1", "--compile", "--quiet")
    assert code == 0, err
    (run_json,) = tmp_path.glob("*/run.json")
    run_dir = run_json.parent
    experiments = json.loads(run_json.read_text())["config"]["experiments"]
    assert {name: e["training"]["compile"] for name, e in experiments.items()} == {"E1": True, "E2": True}
    code, _, err = cli("run", "--resume", run_dir, "--compile")
    assert code == 2 and "drop --compile/--no-compile" in err
    compiled_suite = tmp_path / "compiled.toml"
    compiled_suite.write_text(tiny_suite_toml(tiny_model_dir, image_folder, training="epochs = 1, batch_size = 8, compile = true"))
    code, _, err = cli("run", "E2", "--config", compiled_suite, "--output", tmp_path / "eager", "--no-compile", "--quiet")
    assert code == 0, err
    (run_json,) = (tmp_path / "eager").glob("*/run.json")
    assert json.loads(run_json.read_text())["config"]["experiments"]["E2"]["training"]["compile"] is False


def test_cuda_determinism_warnings_are_left_to_the_report_and_others_still_shown():
    import warnings

    from vptbench.cli.libraries import quiet_libraries as _quiet_libraries

    torch_wordings = [
        "cuDNN Attention defaults to a non-deterministic algorithm. To explicitly enable determinism call torch.use_deterministic_algorithms(True, warn_only=False).",
        "scatter_add_cuda_kernel does not have a deterministic implementation, but you set 'torch.use_deterministic_algorithms(True, warn_only=True)'.",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _quiet_libraries()
        for message in [*torch_wordings, "something else worth seeing"]:
            warnings.warn(message, UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else worth seeing"]

