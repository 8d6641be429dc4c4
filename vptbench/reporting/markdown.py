"""`report.md`: readable on GitHub, every number traceable to the run that produced it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vptbench.reporting.caveats import column_notes
from vptbench.reporting.console import NUMERIC
from vptbench.reporting.tables import cached_note, display_rows, shows_cached, summarize
from vptbench.results.manifest import RunManifest
from vptbench.results.records import RunRecord, missing_keys

# torch warns of this once a process, in the middle of the progress bars; the report says it instead
CUDA_NOTE = (
    "- On CUDA the same seed gives close, not always bit-identical numbers: some kernels (attention's "
    "backward among them) have no deterministic version."
)


def markdown_report(
    meta: RunManifest, records: list[RunRecord], frame: pd.DataFrame, plots: list[Path], search: list[str] | None = None, significance: list[str] | None = None
) -> str:
    """The report; `search`, a searched run's "## Search" section (reporting.search), goes after the
    plots; `significance`, the "## Which differences are real" section (reporting.significance),
    right after the summary."""
    env = meta.environment
    packages = env.get("packages", {})
    lines = [
        f"# vptbench report: suite `{meta.suite}`",
        "",
        f"- Started {meta.started or '?'}{_resumed(meta)}, status **{meta.status}**, device {meta.device}",
        *_provenance(meta),
        f"- {_seeds(meta, records)}; model `{meta.config.model_name}`, "
        f"dataset `{meta.config.dataset_name}`",
        f"- torch {packages.get('torch')}, transformers {packages.get('transformers')}, vptbench "
        f"{packages.get('vptbench')}, commit {env.get('git_commit') or 'unknown'}",
        "- Model selection and convergence use the validation split only; the test split is evaluated once, "
        "on the selected state. Test accuracy shows mean ± std over seeds, or a 95 % (Wilson) interval "
        "for a single seed. (!) marks a reference value that one run of the experiment could not "
        "plausibly have scored: outside a 95 % interval of one run's test accuracy, which with one seed "
        "is the Wilson interval of this test split, and with several adds the seeds' spread (a t "
        "prediction interval from their std, combined with the split's binomial variance), so that "
        "seeds which disagree widely rule out little (summary.csv: `run_interval_low`, `run_interval_high`).",
        *_refit_note(records),
        *([CUDA_NOTE] if meta.device.startswith("cuda") else []),
        "",
        "## Summary",
        "",
    ]
    summary = summarize(frame, meta.plan, records)
    rows = display_rows(summary)
    if rows:  # the displayed strings as they are ("0.960", not a re-parsed 0.96), numbers right-aligned
        align = ["right" if column in NUMERIC else "left" for column in rows[0]]
        lines += [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True, colalign=align), ""]
    else:
        lines += ["_No run finished._", ""]
    if shows_cached(rows):
        lines += [cached_note(summary, rows) + ".", ""]
    lines += [line for note in column_notes(summary, rows).values() for line in (note + ".", "")]
    if missing := missing_runs(meta, records):
        lines += [f"**{missing}.**", ""]
    lines += significance or []
    if plots:
        note = "The curves show each experiment's first successful seed; the scatter plots show every run."
        lines += ["## Plots", "", note, ""] + [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in plots] + [""]
    lines += [*(search or []), "## Per experiment", ""]
    settings = meta.config.experiments
    for record in records:
        entry = settings.get(record.experiment)
        lines += _experiment_section(record, entry.training if entry else None)
    return "\n".join(lines)


def missing_runs(meta: RunManifest, records: list[RunRecord]) -> str:
    """A sentence naming the planned (experiment, seed) runs that have no record, or ""."""
    return not_run_sentence(missing_keys(meta.plan, records), len(meta.plan), meta.status == "combined")


def not_run_sentence(missing: list[str], planned: int, combined: bool = False) -> str:
    if not missing:
        return ""
    remedy = "`vptbench run --resume` on the directory that ran them, then report again" if combined else "`vptbench run --resume` runs them"
    return f"Not run: {', '.join(missing)} ({len(missing)} of {planned} planned runs have no record; {remedy})"


def _experiment_section(record: RunRecord, training: dict | None) -> list[str]:
    title = f"### {record.experiment} · `{record.tuner}` · seed {record.seed} · {record.status}"
    lines = [title, ""]
    if record.params:
        lines += ["Params: " + ", ".join(f"`{k}={v}`" for k, v in record.params.items()), ""]
    if training:  # what makes two rows comparable, e.g. a short --epochs run beside a full one
        lines += [_training_line(training, record), ""]
    if record.status != "ok" and record.error:
        lines += [f"Error: {record.error}", ""]
    if untrained := untrained_note(record):
        lines += [f"Warning: {untrained}", ""]
    if not record.per_class or record.confusion_matrix is None:
        return lines
    per_class = [c.model_dump(by_alias=True) for c in record.per_class]
    report = pd.DataFrame(per_class).rename(columns=str.capitalize)
    lines += [report.to_markdown(index=False, floatfmt=".3f"), ""]
    if absent := absent_classes_note(record):
        lines += [absent, ""]
    names = [c.class_ for c in record.per_class]
    confusion = pd.DataFrame(record.confusion_matrix, index=names, columns=names)
    confusion.index.name = "true \\ predicted"
    lines += ["Confusion matrix (rows: true class, columns: predicted):", "", confusion.to_markdown(), ""]
    return lines


def absent_classes_note(record: RunRecord) -> str:
    """A sentence when the test split lacks a class: its macro-F1 then averages over fewer classes."""
    absent = [c.class_ for c in record.per_class or [] if c.support == 0]
    return f"The test split has no image of {', '.join(absent)}: macro-F1 averages over the classes it holds or the model predicts." if absent else ""


def untrained_note(record: RunRecord) -> str:
    """A sentence when parameters that look trained never were: trainable ones no gradient reached,
    or, with nothing trainable, parameters the tuner added and froze (evaluated as initialised)."""
    if record.frozen_added_params:
        return f"nothing is trainable, yet the tuner added {record.frozen_added_params:,} parameters of its own: they were evaluated as initialised"
    missing = record.trainable_without_gradient
    if missing is None or not missing.count:
        return ""
    names = ", ".join(missing.names) + (", …" if missing.tensors > len(missing.names) else "")
    return f"{missing.count:,} of the {record.trainable_params or 0:,} trainable parameters got no gradient in the first epoch, so they did not train ({names})"


def _training_line(training: dict, record: RunRecord) -> str:
    how = f"{record.precision or training['precision']}, {'compiled' if training.get('compile') else 'eager'}"
    if record.trainable_params == 0:
        return f"Training: none, nothing is trainable; evaluated in {how}"
    ran = f" (ran {record.epochs_run})" if record.epochs_run not in (None, training["epochs"]) else ""
    return f"Training: {training['optimizer']} lr {training['lr']:g}, batch {training['batch_size']}, {training['epochs']} epoch{'' if training['epochs'] == 1 else 's'}{ran}, {how}"


def _refit_note(records: list[RunRecord]) -> list[str]:
    """A bullet naming the runs (`refit = true`) whose test evaluation is of a refit on train +
    validation, and for how many epochs; none when no run was refit."""
    refit = [r for r in records if r.refit_epochs is not None]
    if not refit:
        return []
    runs = ", ".join(f"{r.key} for {r.refit_epochs} epoch{'' if r.refit_epochs == 1 else 's'}" for r in refit)
    others = "; the other runs were tested as selected on validation" if len(refit) < len(records) else ""
    return [f"- Refit on train + validation with the epochs selected on validation, then tested (VPT's protocol): {runs}{others}."]


def _seeds(meta: RunManifest, records: list[RunRecord]) -> str:
    """The seeds, per experiment where they differ (runs combined from several directories)."""
    by_experiment: dict[str, list[int]] = {}
    for record in records:
        by_experiment.setdefault(record.experiment, []).append(record.seed)
    if len({tuple(sorted(seeds)) for seeds in by_experiment.values()}) > 1:
        return "Seeds " + "; ".join(f"{e}: {', '.join(map(str, sorted(seeds)))}" for e, seeds in by_experiment.items())
    return f"Seeds {', '.join(map(str, meta.seeds))}"


def _provenance(meta: RunManifest) -> list[str]:
    """Where a copied or combined report's runs come from, and records left out as damaged."""
    lines = []
    if sources := meta.sources:
        lines.append(f"- {'Combines the runs of' if len(sources) > 1 else 'A copy of'} {', '.join(f'`{s}`' for s in sources)}")
        lines += [f"  - {o.run} is in {len(o.in_)} of them; reported from `{o.reported}`" for o in meta.overlapping_runs]
    lines += [f"- Damaged record, left out: `{damage.path}` ({damage.problem})" for damage in meta.damaged_records]
    return lines


def _resumed(meta: RunManifest) -> str:
    return f" (resumed {', '.join(meta.resumed)})" if meta.resumed else ""
