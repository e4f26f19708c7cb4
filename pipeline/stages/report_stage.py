"""The report stage: the cells' records into results.json, report.md and plots; the CLI's summary of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ... import __version__
from ...core.errors import BadInput
from ...core.io import (
    atomic_write_json,
    atomic_write_text,
)
from ..config import RunConfig
from ..records import read_record
from ..report import arm, at_reference, build_results, render_markdown, summary_value, write_plots
from ..synthetic import load_synthetic
from .cells import cell_key, open_cell_datasets, student_config, student_store
from .grid import feature_cell, grid, reference_cell
from .run import RunDir, runtime


def stage_report(run: RunDir, config: RunConfig) -> Path:
    """Collect this config's student runs into results.json, report.md and plots/accuracy.png."""
    runs: list[dict[str, Any]] = []
    _, precision = runtime(config)
    students = student_config(run, config)
    jobs = grid(config)
    for job in jobs:
        if not run.student_run(job).exists():
            raise BadInput(
                f"student run {run.student_run(job).name} is missing; run the students stage first"
            )
    datasets = open_cell_datasets(run, config, jobs)
    for job in jobs:
        path = run.student_run(job)
        record = read_record(path)
        if record.get("cache_key") != cell_key(
            job, config, students, datasets[feature_cell(config, job)], precision
        ):
            raise BadInput(
                f"student run {path.name} was trained with another config or store; run the students stage again"
            )
        runs.append(record)
    results = build_results(
        __version__,
        config.model_dump(mode="json"),
        _synthetic_meta(run, config),
        runs,
        reference_cell(config),
        [d.provenance for d in datasets.values()],
    )
    atomic_write_json(run.results, results)
    plots = write_plots(results, run.plots)
    atomic_write_text(run.report, render_markdown(results, plots))
    return run.report


def _synthetic_meta(run: RunDir, config: RunConfig) -> dict[str, Any]:
    if run.synthetic.exists():
        synthetic = load_synthetic(run.synthetic)
        return {"method": synthetic.method, "ipc": synthetic.ipc, "sha256": synthetic.sha256}
    from ...store.reader import FeatureStore

    meta = FeatureStore(student_store(run, config)).meta
    return {"method": config.distill.method, "ipc": config.distill.ipc, "sha256": meta["synthetic_sha256"]}


def summary_line(run: RunDir) -> str:
    results = json.loads(run.results.read_text())
    cells = [s for s in results["summary"] if at_reference(s, results["reference"], ("view_policy",))]
    return ", ".join(f"{s['student']}/{arm(s)} {summary_value(s)}" for s in cells)


def diverged_runs(run: RunDir) -> list[dict[str, Any]]:
    """The runs of results.json recorded as diverged (``students.on_diverge: record``)."""
    return [r for r in json.loads(run.results.read_text())["runs"] if r.get("status") == "diverged"]
