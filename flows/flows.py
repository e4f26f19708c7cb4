"""Prefect flows: thin wrappers over pipeline.stages that pass run-directory paths, never arrays.

Every flow takes the run directory and, optionally, the whole run configuration as a typed (pydantic) parameter,
so a deployment's UI shows the config as a form; a given config is validated and written to ``DIR/config.yaml``
first, otherwise the directory's own config (or the defaults) is used. ``dask_address`` fans the per-epoch
extraction and the student grid out over a dask.distributed cluster; without it everything runs in this process.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, task

from ..pipeline import stages
from ..pipeline.config import RunConfig
from ..pipeline.jobs import StudentJob
from ..pipeline.lock import run_lock
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


RETRYING = {"retries": RETRIES, "retry_delay_seconds": RETRY_DELAYS, "retry_condition_fn": retry_transient}


def _run_dir(run_dir: str) -> stages.RunDir:
    return stages.RunDir(location.local_dir(run_dir))


# The parameters every flow shares, described once; ``parameters`` appends them to a flow's docstring, where
# Prefect's UI and ``prefect deployment inspect`` read each parameter's description.
PARAMETERS = {
    "run_dir": "run directory on the machine that runs the flow",
    "config": "the run configuration; empty: the directory's config.yaml, else the defaults",
    "force": "recompute even when the inputs are unchanged",
    "dask_address": "a dask.distributed scheduler (tcp://host:port) to run the tasks on; empty: in this process",
}


def parameters(flow_fn: Callable[..., str]) -> Callable[..., str]:
    """Append the Args section of the shared parameters the flow takes to its docstring."""
    names = [n for n in PARAMETERS if n in inspect.signature(flow_fn).parameters]
    lines = "\n".join(f"        {n}: {PARAMETERS[n]}" for n in names)
    flow_fn.__doc__ = f"{(flow_fn.__doc__ or '').rstrip()}\n\n    Args:\n{lines}\n    "
    return flow_fn


def locked(flow_fn: Callable[..., str]) -> Callable[..., str]:
    """Forward elfdd's logs to the flow run and hold the run directory's lock (pipeline.lock) while the flow works
    on it."""

    @functools.wraps(flow_fn)
    def wrapper(run_dir: str = "runs/default", *args: Any, **kwargs: Any) -> str:
        forward_logs()
        with run_lock(location.local_dir(run_dir)):
            return flow_fn(run_dir, *args, **kwargs)

    return wrapper


def open_run(run_dir: str, config: RunConfig | None) -> tuple[stages.RunDir, RunConfig]:
    """The run directory with ``config`` written into it, or with its own config.yaml (else the defaults)."""
    root = location.local_dir(run_dir)
    if config is None and stages.RunDir(root).config.exists():
        return stages.RunDir(root), stages.read_run_config(root)
    config = config or RunConfig()
    return stages.prepare_run(root, config), config


# Tasks get the run directory and the flow's validated config as values (never re-reading config.yaml).


@task(name="distill", **RETRYING)
def distill_task(run_dir: str, config: RunConfig, force: bool = False) -> str:
    return str(stages.stage_distill(_run_dir(run_dir), config, force=force))


@task(name="train-teacher", **RETRYING)
def teacher_task(run_dir: str, config: RunConfig, force: bool = False) -> str:
    return str(stages.stage_teacher(_run_dir(run_dir), config, force=force))


@task(name="extract-epoch", task_run_name="extract-{teacher}-epoch-{epoch}", **RETRYING)
def extract_epoch_task(
    run_dir: str, config: RunConfig, target: str, teacher: str, epoch: int, key: str
) -> list[str]:
    """One teacher checkpoint's features into the prepared store ``target`` (``key``: the stage's input key)."""
    return stages.stage_extract_epoch(_run_dir(run_dir), config, Path(target), teacher, epoch, key)


@task(name="train-student", task_run_name="student-{name}", **RETRYING)
def student_task(run_dir: str, config: RunConfig, name: str, cell: dict, force: bool = False) -> str:
    """One grid cell (``cell``: the StudentJob's fields; ``name``: its label, for the UI)."""
    return str(stages.stage_student(_run_dir(run_dir), config, StudentJob(**cell), force=force))


@task(name="report")
def report_task(run_dir: str, config: RunConfig) -> str:
    """Write results.json, report.md and plots, and publish the summary table and the report as artifacts."""
    run = _run_dir(run_dir)
    report = stages.stage_report(run, config)
    artifacts.publish_report(run)
    diverged = stages.diverged_runs(run)
    if diverged:  # the flow run still completes: the study has its report, with these runs marked
        logging.getLogger("elfdd").warning(
            "%d student runs diverged (recorded in results.json): %s",
            len(diverged),
            ", ".join(r["cell"] for r in diverged),
        )
    return str(report)


@flow(name="distill")
@locked
@parameters
def distill_flow(run_dir: str = "runs/default", config: RunConfig | None = None, force: bool = False) -> str:
    """Distil the synthetic set (DM, DSA or MTT, optionally with MetaDD)."""
    run, config = open_run(run_dir, config)
    path = distill_task(run_dir, config, force)
    artifacts.publish_distill(run)
    return path


@flow(name="train-teacher")
@locked
@parameters
def teacher_flow(run_dir: str = "runs/default", config: RunConfig | None = None, force: bool = False) -> str:
    """Train every configured teacher on the real data and checkpoint it at its configured epochs."""
    run, config = open_run(run_dir, config)
    path = teacher_task(run_dir, config, force)
    artifacts.publish_teacher(run, config)
    return path


@flow(name="extract-features")
@locked
@parameters
def extract_flow(
    run_dir: str = "runs/default",
    config: RunConfig | None = None,
    force: bool = False,
    dask_address: str | None = None,
) -> str:
    """Extract the teacher features of the synthetic set into the store, one task per checkpoint."""
    run, config = open_run(run_dir, config)

    def map_epochs(target: Path, items: list[tuple[str, int]], key: str) -> None:
        calls = [
            {
                "run_dir": run_dir,
                "config": config,
                "target": str(target),
                "teacher": teacher,
                "epoch": epoch,
                "key": key,
            }
            for teacher, epoch in items
        ]
        run_tasks(extract_epoch_task, calls, dask_address)

    path = stages.stage_extract(run, config, force, map_epochs)
    artifacts.publish_extract(run, config)
    return str(path)


@flow(name="train-students")
@locked
@parameters
def students_flow(
    run_dir: str = "runs/default",
    config: RunConfig | None = None,
    force: bool = False,
    dask_address: str | None = None,
) -> str:
    """Train every student cell of the grid from the store (this run's, or ``students.store``), then report."""
    run, config = open_run(run_dir, config)
    jobs = stages.grid(config)
    pending = stages.pending_cells(run, config, jobs)  # refuses a mismatched store before any training
    device = resolve_device(config.device).type
    pool = LocalPool.for_cells(len(jobs if force else pending), config.workers, config.threads, device)
    calls = [
        {"run_dir": run_dir, "config": config, "name": job.name, "cell": asdict(job), "force": force}
        for job in jobs
    ]
    run_tasks(student_task, calls, dask_address, progress="elfdd-students", pool=pool)
    return report_task(run_dir, config)


@flow(name="report")
@locked
@parameters
def report_flow(run_dir: str = "runs/default", config: RunConfig | None = None, force: bool = False) -> str:
    """Write results.json, report.md and plots from the finished student runs."""
    del force
    _, config = open_run(run_dir, config)
    return report_task(run_dir, config)


@flow(name="elf-pipeline")
@locked
@parameters
def elf_pipeline(
    run_dir: str = "runs/default",
    config: RunConfig | None = None,
    force: bool = False,
    dask_address: str | None = None,
) -> str:
    """distill -> train-teacher -> extract-features -> train-students (+ report), as subflows. Each stage keeps its
    output when its inputs' key is unchanged.
    """
    _, config = open_run(run_dir, config)
    distill_flow(run_dir, config, force=force)
    teacher_flow(run_dir, config, force=force)
    extract_flow(run_dir, config, force=force, dask_address=dask_address)
    return students_flow(run_dir, config, force=force, dask_address=dask_address)


FLOWS = {
    "run": elf_pipeline,
    "distill": distill_flow,
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
