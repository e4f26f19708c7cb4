"""Prefect flows: thin wrappers over pipeline.stages that pass run-directory paths, never arrays."""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path

from .settings import quiet_prefect_env

quiet_prefect_env()

from prefect import flow, task  # noqa: E402

from ..pipeline import stages  # noqa: E402
from ..pipeline.students import StudentJob  # noqa: E402


def _run(run_dir: str) -> tuple[stages.RunDir, stages.RunConfig]:
    return stages.RunDir(Path(run_dir)), stages.read_run_config(Path(run_dir))


@task(name="distill")
def distill_task(run_dir: str, force: bool = False) -> str:
    return str(stages.stage_distill(*_run(run_dir), force=force))


@task(name="train-teacher")
def teacher_task(run_dir: str, force: bool = False) -> str:
    return str(stages.stage_teacher(*_run(run_dir), force=force))


@task(name="extract-features")
def extract_task(run_dir: str, force: bool = False) -> str:
    return str(stages.stage_extract(*_run(run_dir), force=force))


@task(name="train-student", task_run_name="student-{name}")
def student_task(run_dir: str, name: str, cell: dict, force: bool = False) -> str:
    """One grid cell (``cell``: the StudentJob's fields; ``name``: its label, for the UI)."""
    run, config = _run(run_dir)
    return str(stages.stage_student(run, config, StudentJob(**cell), force=force))


@task(name="report")
def report_task(run_dir: str) -> str:
    """Write results.json, report.md and plots, and publish the summary table and the report as artifacts."""
    run, config = _run(run_dir)
    report = stages.stage_report(run, config)
    publish_report(run)
    return str(report)


def publish_report(run: stages.RunDir) -> None:
    """The report as Prefect artifacts of the flow run: a table (key elfdd-summary) and the markdown (elfdd-report)."""
    import json

    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from ..pipeline.report import AXES

    results = json.loads(run.results.read_text())
    rows = [
        {
            **{k: s[k] for k in ("student", "mode", *AXES)},
            "accuracy_pct": round(100 * s["mean"], 2),
            "std_pct": round(100 * s["std"], 2),
            "n": s["n"],
        }
        for s in results["summary"]
    ]
    create_table_artifact(rows, key="elfdd-summary", description=f"test accuracy per grid cell, {run.root}")
    create_markdown_artifact(run.report.read_text(), key="elfdd-report", description=str(run.report))


@flow(name="distill")
def distill_flow(run_dir: str, force: bool = False) -> str:
    return distill_task(run_dir, force)


@flow(name="train-teacher")
def teacher_flow(run_dir: str, force: bool = False) -> str:
    return teacher_task(run_dir, force)


@flow(name="extract-features")
def extract_flow(run_dir: str, force: bool = False) -> str:
    return extract_task(run_dir, force)


@flow(name="train-students")
def students_flow(run_dir: str, force: bool = False) -> str:
    """Train every student of the config from the store (this run's, or ``students.store``), then report."""
    run, config = _run(run_dir)
    jobs = stages.grid(config)
    for epoch, layer in dict.fromkeys((j.teacher_epoch, j.layer) for j in jobs):
        stages.open_student_dataset(
            run, config, epoch, layer
        )  # refuse a mismatched store before any training
    for job in jobs:
        student_task(run_dir, job.name, asdict(job), force)
    return report_task(run_dir)


@flow(name="report")
def report_flow(run_dir: str, force: bool = False) -> str:
    del force  # the report is always rewritten from the finished runs
    return report_task(run_dir)


@flow(name="elf-pipeline")
def elf_pipeline(run_dir: str, force: bool = False) -> str:
    """distill -> train-teacher -> extract-features -> train-students (+ report), as subflows. Each stage keeps
    its output when its inputs' key is unchanged; ``force`` recomputes everything."""
    distill_flow(run_dir, force)
    teacher_flow(run_dir, force)
    extract_flow(run_dir, force)
    return students_flow(run_dir, force)


FLOWS = {
    "run": elf_pipeline,
    "distill": distill_flow,
    "teacher": teacher_flow,
    "extract": extract_flow,
    "students": students_flow,
    "report": report_flow,
}


def no_heartbeat() -> contextlib.AbstractContextManager:
    """Synchronous flows pay about 1 s for a heartbeat thread; an in-process CLI run does not need it."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
