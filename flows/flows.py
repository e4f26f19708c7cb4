"""Prefect flows: thin wrappers over pipeline.stages that pass run-directory paths, never arrays."""

from __future__ import annotations

import contextlib
from pathlib import Path

from .settings import quiet_prefect_env

quiet_prefect_env()

from prefect import flow, task  # noqa: E402

from ..pipeline import stages  # noqa: E402
from ..pipeline.students import StudentJob, student_jobs  # noqa: E402


def _run(run_dir: str) -> tuple[stages.RunDir, stages.RunConfig]:
    return stages.RunDir(Path(run_dir)), stages.read_run_config(Path(run_dir))


@task(name="distill")
def distill_task(run_dir: str) -> str:
    return str(stages.stage_distill(*_run(run_dir)))


@task(name="train-teacher")
def teacher_task(run_dir: str) -> str:
    return str(stages.stage_teacher(*_run(run_dir)))


@task(name="extract-features")
def extract_task(run_dir: str) -> str:
    return str(stages.stage_extract(*_run(run_dir)))


@task(name="train-student", task_run_name="student-{student}-{loss_mode}-{view_policy}-seed{seed}")
def student_task(
    run_dir: str, student: str, loss_mode: str, seed: int, view_policy: str | None = None
) -> str:
    run, config = _run(run_dir)
    return str(stages.stage_student(run, config, StudentJob(student, loss_mode, seed, view_policy)))


@task(name="report")
def report_task(run_dir: str) -> str:
    return str(stages.stage_report(*_run(run_dir)))


@flow(name="distill")
def distill_flow(run_dir: str) -> str:
    return distill_task(run_dir)


@flow(name="train-teacher")
def teacher_flow(run_dir: str) -> str:
    return teacher_task(run_dir)


@flow(name="extract-features")
def extract_flow(run_dir: str) -> str:
    return extract_task(run_dir)


@flow(name="train-students")
def students_flow(run_dir: str) -> str:
    """Train every student of the config from the store (this run's, or ``students.store``), then report."""
    run, config = _run(run_dir)
    stages.open_student_dataset(run, config)  # refuse a mismatched store before any training
    for job in student_jobs(config.students):
        student_task(run_dir, job.student, job.loss_mode, job.seed, job.view_policy)
    return report_task(run_dir)


@flow(name="report")
def report_flow(run_dir: str) -> str:
    return report_task(run_dir)


@flow(name="elf-pipeline")
def elf_pipeline(run_dir: str) -> str:
    """distill -> train-teacher -> extract-features -> train-students (+ report), as subflows."""
    distill_flow(run_dir)
    teacher_flow(run_dir)
    extract_flow(run_dir)
    return students_flow(run_dir)


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
