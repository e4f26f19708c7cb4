"""Prefect flows: thin wrappers over pipeline.stages that pass run-directory paths, never arrays.

Every flow takes the run directory and, optionally, the whole run configuration as a typed (pydantic) parameter,
so a deployment's UI shows the config as a form; a given config is validated and written to ``DIR/config.yaml``
first, otherwise the directory's own config (or the defaults) is used. ``dask_address`` fans the per-epoch
extraction and the student grid out over a dask.distributed cluster; without it everything runs in this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import Flow, flow, task
from pydantic import Field

from ..core.errors import BadInput
from ..pipeline import stages
from ..pipeline.config import RunConfig
from ..pipeline.run.lock import claimed_run
from ..pipeline.students import outcome, read_record
from ..pipeline.training import resolve_device
from ..store import location
from . import artifacts
from .runner import RETRIES, RETRY_DELAYS, LocalPool, retry_transient, run_tasks


def forward_logs() -> None:
    """elfdd's progress lines join the flow run's logs (the UI's log view): the handlers Prefect gives the loggers of
    PREFECT_LOGGING_EXTRA_LOGGERS, added to the ``elfdd`` logger when a flow starts (in any process: the CLI's, a
    worker's flow-run process), never on import."""
    from prefect.logging.handlers import APILogHandler

    target = logging.getLogger("elfdd")
    if target.level == logging.NOTSET:
        target.setLevel(logging.INFO)
    for handler in logging.getLogger("prefect.extra").handlers:
        # Only the API handler: another one (a console's, a test's capture) also sees the records through the root.
        if isinstance(handler, APILogHandler) and handler not in target.handlers:
            target.addHandler(handler)


def announce_flow_run() -> None:
    """Where to watch the run: the top flow run's page in the UI, when the user set a server (PREFECT_API_URL; the
    temporary server the CLI starts otherwise has no UI and is gone when the command ends)."""
    from prefect.runtime import flow_run

    if os.environ.get("PREFECT_API_URL") and flow_run.get_parent_flow_run_id() is None:
        logging.getLogger("elfdd").info("flow run %s: %s", flow_run.get_name(), flow_run.ui_url)


class CopyToPipelineRun(logging.Handler):
    """The stages' lines in the pipeline run's own Logs tab too: a record logged inside one of its subflows (or
    their tasks, in this process) is sent to the API a second time, as the pipeline run's."""

    def __init__(self, pipeline_run_id: str):
        from prefect.logging.handlers import APILogHandler

        super().__init__()
        self.pipeline_run_id = pipeline_run_id
        self.api = APILogHandler()

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        task = TaskRunContext.get()
        flow = FlowRunContext.get()
        current = task.task_run.flow_run_id if task else flow.flow_run.id if flow and flow.flow_run else None
        if current is None or str(current) == self.pipeline_run_id:
            return  # outside any run, or the pipeline run's own record (forward_logs sends it)
        copy = logging.makeLogRecord(record.__dict__)
        copy.flow_run_id, copy.task_run_id = self.pipeline_run_id, None
        self.api.handle(copy)


@contextlib.contextmanager
def logs_in_pipeline_run() -> Iterator[None]:
    from prefect.runtime import flow_run

    handler = CopyToPipelineRun(str(flow_run.get_id()))
    target = logging.getLogger("elfdd")
    target.addHandler(handler)
    try:
        yield
    finally:
        target.removeHandler(handler)


RETRYING: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_transient,
}


def _run(run_dir: str, config: RunConfig) -> stages.Run:
    return stages.Run(location.local_dir(run_dir), config)


# Every flow run is named by its flow and run directory ("train-students runs/default"), so the UI's list says
# which directory each run worked on; the CLI also tags them (run-dir:..., config:<hash>).

# The parameters every flow takes, described once: Prefect shows the descriptions in a deployment's run form.
RUN_DIR: Any = Field("runs/default", description="run directory on the machine that runs the flow")
CONFIG: Any = Field(
    None, description="the run configuration; empty: the directory's config.yaml, else the defaults"
)
FORCE: Any = Field(False, description="recompute even when the inputs are unchanged")
DASK_ADDRESS: Any = Field(
    None,
    description="a dask.distributed scheduler (tcp://host:port) to run the tasks on; empty: in this process",
)


@contextlib.contextmanager
def opened_run(run_dir: str, config: RunConfig | None) -> Iterator[stages.Run]:
    """What every flow does first: forward elfdd's logs to the flow run, claim the run directory (its lock; a
    refusal leaves it as found: pipeline.run.lock.claimed_run) and open it (open_run)."""
    forward_logs()
    announce_flow_run()
    with claimed_run(location.local_dir(run_dir)):
        yield open_run(run_dir, config)


def open_run(run_dir: str, config: RunConfig | None) -> stages.Run:
    """The run directory with ``config`` written into it, or with its own config.yaml (else the defaults)."""
    root = location.local_dir(run_dir)
    if config is None and stages.RunDir(root).config.exists():
        return stages.open_run(root)
    return stages.prepare_run(root, config or RunConfig())


# Tasks get the run directory and the flow's validated config as values (never re-reading config.yaml).


@task(name="distill", **RETRYING)
def distill_task(run_dir: str, config: RunConfig, force: bool = False) -> str:
    return str(stages.stage_distill(_run(run_dir, config), force=force))


@task(name="train-teacher", **RETRYING)
def teacher_task(run_dir: str, config: RunConfig, force: bool = False) -> str:
    return str(stages.stage_teacher(_run(run_dir, config), force=force))


@task(name="extract-epoch", task_run_name="extract-{teacher}-epoch-{epoch}", **RETRYING)
def extract_epoch_task(
    run_dir: str, config: RunConfig, target: str, teacher: str, epoch: int, key: str
) -> list[str]:
    """One teacher checkpoint's features into the prepared store ``target`` (``key``: the stage's input key)."""
    return stages.stage_extract_epoch(_run(run_dir, config), Path(target), teacher, epoch, key)


@task(name="train-student", task_run_name="student-{name}", **RETRYING)
def student_task(
    run_dir: str, config: RunConfig, name: str, cells: list[dict], force: bool = False
) -> list[str]:
    """Grid cells (``cells``: their fields; ``name``: a label for the UI): one alone, or several of one architecture
    trained together as one batched model (pipeline/students/batched.py)."""
    group = [stages.Cell(**cell) for cell in cells]
    return [str(p) for p in stages.stage_cell_group(_run(run_dir, config), group, force=force)]


@task(name="full-data", **RETRYING)
def full_data_task(run_dir: str, config: RunConfig) -> dict[str, float]:
    """Each student architecture trained on the whole training set, once per key (students.full_data)."""
    return stages.stage_full_data(_run(run_dir, config))


@task(name="report")
def report_task(run_dir: str, config: RunConfig) -> str:
    """Write results.json, report.md and plots, and publish the summary table and the report as artifacts."""
    run = _run(run_dir, config)
    report = stages.stage_report(run)
    artifacts.publish_report(run.dir)
    diverged = stages.diverged_runs(run.dir)
    if diverged:  # the flow run still completes: the study has its report, with these runs marked
        logging.getLogger("elfdd").warning(
            "%d student runs diverged (recorded in results.json): %s",
            len(diverged),
            ", ".join(r["cell"] for r in diverged),
        )
    return str(report)


@flow(name="distill", flow_run_name="distill {run_dir}")
def distill_flow(run_dir: str = RUN_DIR, config: RunConfig | None = CONFIG, force: bool = FORCE) -> str:
    """Distil the synthetic set (DM, DSA or MTT, optionally with MetaDD)."""
    with opened_run(run_dir, config) as run:
        config = run.config
        path = distill_task(run_dir, config, force)
        artifacts.publish_distill(run.dir)
        return path


@flow(name="import-synthetic", flow_run_name="import-synthetic {run_dir}")
def import_flow(run_dir: str = RUN_DIR, config: RunConfig | None = CONFIG, force: bool = FORCE) -> str:
    """Import a synthetic set made elsewhere as the run's distill stage (``distill.method: file``;
    ``distill.source`` names its files, format and image space)."""
    with opened_run(run_dir, config) as run:
        config = run.config
        if config.distill.method != "file":
            raise BadInput("import-synthetic needs distill.method file and distill.source.paths")
        path = distill_task(run_dir, config, force)
        artifacts.publish_distill(run.dir)
        return path


@flow(name="train-teacher", flow_run_name="train-teacher {run_dir}")
def teacher_flow(run_dir: str = RUN_DIR, config: RunConfig | None = CONFIG, force: bool = FORCE) -> str:
    """Train every configured teacher on the real data and checkpoint it at its configured epochs."""
    with opened_run(run_dir, config) as run:
        config = run.config
        path = teacher_task(run_dir, config, force)
        artifacts.publish_teacher(run.dir, config)
        return path


@flow(name="extract-features", flow_run_name="extract-features {run_dir}")
def extract_flow(
    run_dir: str = RUN_DIR,
    config: RunConfig | None = CONFIG,
    force: bool = FORCE,
    dask_address: str | None = DASK_ADDRESS,
) -> str:
    """Extract the teacher features of the synthetic set into the store, one task per checkpoint."""
    with opened_run(run_dir, config) as run:
        config = run.config

        def map_epochs(target: Path, items: list[tuple[str, int]], key: str) -> None:
            calls = [
                {
                    "run_dir": run_dir,
                    "config": config,
                    "target": str(target),
                    "teacher": t,
                    "epoch": e,
                    "key": key,
                }
                for t, e in items
            ]
            run_tasks(extract_epoch_task, calls, dask_address)

        path = stages.stage_extract(run, force, map_epochs)
        artifacts.publish_extract(run.dir, config)
        return str(path)


@flow(name="train-students", flow_run_name="train-students {run_dir}")
def students_flow(
    run_dir: str = RUN_DIR,
    config: RunConfig | None = CONFIG,
    force: bool = FORCE,
    dask_address: str | None = DASK_ADDRESS,
) -> str:
    """Train every student cell of the grid from the store (this run's, or ``students.store``), then report. With
    ``students.yardstick`` the random subset's run (``DIR/yardstick``) goes first, its stages as subflows; with
    ``students.full_data`` each student's full-data reference is trained (or kept) before the report."""
    with opened_run(run_dir, config) as run:
        config = run.config
        if config.students.yardstick:
            yardstick = stages.yardstick_run(run)
            stage_flows(str(yardstick.dir.root), yardstick.config, force, dask_address)
        cells = stages.grid(config)
        pending = stages.pending_cells(run, cells)  # refuses a mismatched store before any training
        # a kept cell's task only reads its record (on_diverge: fail)
        groups = stages.cell_groups(config, cells)
        todo = set(pending)
        busy = len(groups) if force else len([g for g in groups if todo.intersection(g)])
        device = resolve_device(config.device).type
        pool = LocalPool.for_cells(busy, config.workers, config.threads, device)
        calls = [
            {
                "run_dir": run_dir,
                "config": config,
                "name": group[0].name if len(group) == 1 else f"{group[0].name}-x{len(group)}",
                "cells": [asdict(cell) for cell in group],
                "force": force,
            }
            for group in groups
        ]
        progress = artifacts.artifact_key("students", run.dir.root)
        run_tasks(
            student_task,
            calls,
            dask_address,
            progress=progress,
            pool=pool,
            describe=accuracies,
            what="students",
        )
        if config.students.full_data is not None:
            full_data_task(run_dir, config)
        return report_task(run_dir, config)


def accuracies(records: list[str]) -> str:
    """What a finished student task gave: each cell's test accuracy (``convnet__task__seed0 81.2 %``)."""
    return ", ".join(f"{record['cell']} {outcome(record)}" for record in map(read_record, map(Path, records)))


@flow(name="report", flow_run_name="report {run_dir}")
def report_flow(run_dir: str = RUN_DIR, config: RunConfig | None = CONFIG, force: bool = FORCE) -> str:
    """Write results.json, report.md and plots from the finished student runs (``force`` has nothing to redo)."""
    with opened_run(run_dir, config) as run:
        config = run.config
        return report_task(run_dir, config)


@flow(name="elf-pipeline", flow_run_name="elf-pipeline {run_dir}")
def elf_pipeline(
    run_dir: str = RUN_DIR,
    config: RunConfig | None = CONFIG,
    force: bool = FORCE,
    dask_address: str | None = DASK_ADDRESS,
) -> str:
    """distill -> train-teacher -> extract-features -> train-students (+ report), as subflows. Each stage keeps its
    output when its inputs' key is unchanged."""
    with opened_run(run_dir, config) as run, logs_in_pipeline_run():
        return stage_flows(run_dir, run.config, force, dask_address)


def stage_flows(run_dir: str, config: RunConfig, force: bool, dask_address: str | None) -> str:
    """Every stage of a run as a subflow of the calling flow, in order; the report's path."""
    distill_flow(run_dir, config, force)
    teacher_flow(run_dir, config, force)
    extract_flow(run_dir, config, force, dask_address)
    return students_flow(run_dir, config, force, dask_address)


FLOWS: dict[str, Flow[..., str]] = {
    "run": elf_pipeline,
    "distill": distill_flow,
    "import-synthetic": import_flow,
    "teacher": teacher_flow,
    "extract": extract_flow,
    "students": students_flow,
    "report": report_flow,
}
DASK_STAGES = ("run", "extract", "students")


def no_heartbeat() -> contextlib.AbstractContextManager:
    """Synchronous flows pay about 1 s for a heartbeat thread; an in-process CLI run does not need it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
