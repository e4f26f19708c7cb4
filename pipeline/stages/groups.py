"""Student cells trained together: the groups of a grid that share one batched model (pipeline/batched.py) and
the stage that trains one group, each cell with its own record and cache key."""

from __future__ import annotations

from pathlib import Path

from ...core.io import atomic_write_json
from ..batched import batchable, batches_by_default, group_key, train_student_group
from ..config import RunConfig
from ..jobs import StudentJob
from ..training import resolve_device
from .cells import (
    StudentCell,
    online_teacher,
    open_cell_datasets,
    student_config,
    student_context,
    student_kinds,
)
from .grid import feature_cell
from .run import Run, RunDir


def stage_student_group(
    run: RunDir, config: RunConfig, jobs: list[StudentJob], force: bool = False
) -> list[Path]:
    """Train the cells of ``jobs`` (one group of :func:`cell_groups`) as one batched model and write each one's
    ``students/<job>.json`` with its own cache key; finished cells with the same key are kept (unless ``force``),
    so a group killed before its end trains again from the start and one whose cells all finished is skipped."""
    state = Run(run, config).configured()
    students = student_config(run, config)
    datasets = open_cell_datasets(run, config, jobs)
    cells = [StudentCell(job, datasets[feature_cell(config, job)], students) for job in jobs]
    keyed = [(cell, cell.key(state)) for cell in cells]
    todo = [(cell, key) for cell, key in keyed if force or not cell.kept(state, key)]
    if len(todo) == 1:
        todo[0][0].build(state, todo[0][1])
    elif todo:
        records = train_student_group(
            [cell.job for cell, _ in todo],
            [cell.dataset for cell, _ in todo],
            student_context(state, students),
            online_teachers(state, [cell.job for cell, _ in todo]),
        )
        for (cell, key), record in zip(todo, records, strict=True):
            atomic_write_json(cell.output(state), {**record, "cache_key": key})
    return [cell.output(state) for cell in cells]


def online_teachers(run: Run, jobs: list[StudentJob]) -> list:
    """Each cell's online teacher (None where its view policy is not online), each checkpoint loaded once."""
    wheres = [feature_cell(run.config, job) if job.view_policy == "online" else None for job in jobs]
    loaded: dict[tuple | None, object] = {}
    for job, where in zip(jobs, wheres, strict=True):
        if where not in loaded:
            loaded[where] = online_teacher(run, job)
    return [loaded[where] for where in wheres]


def cell_groups(config: RunConfig, jobs: list[StudentJob]) -> list[list[StudentJob]]:
    """``jobs`` in the groups they train in, in grid order: the cells of one :func:`batched.group_key` (at most
    ``students.max_group``) as one batched model where ``students.batching`` allows it for their architecture, every
    other cell alone."""
    students = config.students
    device = resolve_device(config.device)
    groups: dict[tuple, list[StudentJob]] = {}
    for job in jobs:
        together = students.batching is not False and batchable(student_kinds(job.student, config))
        if students.batching == "auto":
            together = together and batches_by_default(job.student, device)
        key = group_key(job) if together else ("alone", job)
        groups.setdefault(key, []).append(job)
    return [
        group[start : start + students.max_group]
        for group in groups.values()
        for start in range(0, len(group), students.max_group)
    ]
