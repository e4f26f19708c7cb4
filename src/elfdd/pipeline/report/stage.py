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
from ..config.protocols import SOURCES, protocol_values
from ..run import Run, RunDir
from ..students import CellInputs, grid, read_record, reference_cell, student_store
from ..synthetic import SyntheticSet
from ..teachers.full_data import full_data_accuracies
from ..training import describe_machine
from . import arm, at_reference, build_results, render_markdown, scores, summary_value, write_plots


def stage_report(run: Run) -> Path:
    """Collect this config's cell records into results.json, report.md and plots/accuracy.png."""
    run = run.configured()
    cells = grid(run.config)
    for cell in cells:
        if not run.dir.record_of(cell.name).exists():
            raise BadInput(f"student run {cell.name}.json is missing; run the students stage first")
    inputs = CellInputs(run, cells)
    runs: list[dict[str, Any]] = []
    for cell in cells:
        path = run.dir.record_of(cell.name)
        record = read_record(path)
        if record.get("cache_key") != inputs.stage(cell).key(run):
            raise BadInput(
                f"student run {path.name} was trained with another config or store; run the students stage again"
            )
        runs.append(record)
    results = build_results(
        __version__,
        run.config.model_dump(mode="json"),
        _synthetic_meta(run, inputs.synthetic),
        runs,
        reference_cell(run.config),
        [d.provenance for d in inputs.datasets.values()],
    )
    yardstick = run.dir.yardstick / "results.json" if run.config.students.yardstick else None
    if yardstick is not None and not yardstick.exists():
        raise BadInput(f"the yardstick's results ({yardstick}) are missing; run the students stage first")
    full_data = full_data_accuracies(run)
    results["full_data"] = full_data or None
    # what the cells were keyed and trained with: "auto" in the config resolves per machine
    results["runtime"] = {
        "device": run.device.type,
        "precision": run.precision,
        "machine": describe_machine(run.device),
    }
    results["protocol"] = {
        "name": inputs.students.protocol,
        "source": SOURCES[inputs.students.protocol],
        **protocol_values(inputs.students),
    }
    results["scores"] = scores(results, json.loads(yardstick.read_text()) if yardstick else None, full_data)
    atomic_write_json(run.dir.results, results)
    plots = write_plots(results, run.dir.plots)
    atomic_write_text(run.dir.report, render_markdown(results, plots))
    return run.dir.report


def _synthetic_meta(run: Run, synthetic: SyntheticSet | None) -> dict[str, Any]:
    if synthetic is not None:
        meta = {
            "method": synthetic.method,
            "ipc": synthetic.ipc,
            "num_classes": synthetic.num_classes,
            "sha256": synthetic.sha256,
        }
        source = synthetic.extra.get("source")  # an imported set: its files, format and space
        return {**meta, "source": source} if source else meta
    from ...store.reader import FeatureStore

    config = run.config
    meta = FeatureStore(student_store(run)).meta
    return {
        "method": config.distill.method,
        "ipc": config.distill.ipc,
        "num_classes": meta.get("num_classes"),
        "sha256": meta["synthetic_sha256"],
    }


def summary_table(run: RunDir) -> str:
    """The run's mean test accuracy per student (rows) and arm (columns), at the reference view policy, as a short
    plain-text table for a terminal."""
    results = json.loads(run.results.read_text())
    cells = [s for s in results["summary"] if at_reference(s, results["reference"], ("view_policy",))]
    students = list(dict.fromkeys(s["student"] for s in cells))
    arms = list(dict.fromkeys(arm(s) for s in cells))
    value = {(s["student"], arm(s)): summary_value(s) for s in cells}
    rows = [["student", *arms]] + [
        [student, *(value.get((student, a), "-") for a in arms)] for student in students
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def diverged_runs(run: RunDir) -> list[dict[str, Any]]:
    """The runs of results.json recorded as diverged (``students.on_diverge: record``)."""
    return [r for r in json.loads(run.results.read_text())["runs"] if r.get("status") == "diverged"]
