"""The student grid: every cell of a config, each feature cell paired with its teacher and split, and the reference
cell the report varies one axis from."""

from __future__ import annotations

import functools
import json
from typing import Any

from ...core.errors import BadInput
from ..config import RunConfig
from ..jobs import StudentJob, student_jobs
from ..pairing import Pairing, pair_student, split_shapes
from .run import data_for


def grid(config: RunConfig) -> list[StudentJob]:
    """Every student cell of the config, each feature cell with its paired teacher and split."""
    return student_jobs(config.students, functools.partial(feature_sources, config))


def feature_sources(config: RunConfig, arch: str) -> list[tuple[str, int, str, str]]:
    """(teacher id, epoch, layer, split) of every feature cell of ``arch``: per layer of the grid, the teacher and
    split the pairing rule (or ``students.teacher`` / ``students.split``) gives, at each of its grid epochs."""
    sources = []
    for layer in dict.fromkeys(name for t in config.teacher_pool for name in config.student_layers_of(t)):
        pairing = pair(config, arch, layer)
        teacher = config.teacher_config(pairing.teacher)
        sources += [(teacher.id, e, layer, pairing.split) for e in config.student_epochs_of(teacher)]
    return sources


def pair(config: RunConfig, arch: str, layer: str) -> Pairing:
    """The teacher (among those with ``layer`` in the grid) and split of a student of ``arch`` (pipeline/pairing)."""
    data = data_for(config)
    students = config.students
    teachers = {
        t.id: cached_split_shapes(t.arch, data.image_shape, data.num_classes, json.dumps(t.arch_kwargs))[0][
            layer
        ]
        for t in config.teacher_pool
        if layer in config.student_layers_of(t)
    }
    shapes, default = cached_split_shapes(
        arch, data.image_shape, data.num_classes, json.dumps(students.arch_kwargs.get(arch, {}))
    )
    if arch in students.split:
        if students.split[arch] not in shapes:
            raise BadInput(
                f"students.split: {arch} has no split point {students.split[arch]!r}: {list(shapes)}"
            )
        shapes, default = {students.split[arch]: shapes[students.split[arch]]}, students.split[arch]
    return pair_student(arch, shapes, default, teachers, students.teacher.get(arch))


@functools.lru_cache(maxsize=64)
def cached_split_shapes(arch: str, image_shape: tuple[int, ...], num_classes: int, kwargs: str):
    return split_shapes(arch, image_shape, num_classes, **json.loads(kwargs))


def feature_cell(config: RunConfig, job: StudentJob) -> tuple[str, int, str]:
    """(teacher id, epoch, layer) whose store arrays the cell reads (a baseline: the primary teacher's reference
    ones, for the images alone)."""
    if job.layer is None:
        return config.primary_teacher.id, config.student_teacher_epoch, config.student_layer
    assert job.teacher_epoch is not None  # a cell with a layer has its teacher epoch (grid)
    return job.teacher or config.primary_teacher.id, job.teacher_epoch, job.layer


def reference_cell(config: RunConfig) -> dict[str, Any]:
    """The first value of every grid axis: the cell the report's analyses vary one axis from. The teacher epoch and
    layer are per teacher id (each student reads its paired teacher)."""
    students = config.students
    return {
        "view_policy": students.view_policies[0],
        "feature_loss": students.feature_losses[0],
        "lambda_front": students.lambda_front[0],
        "lambda_rear": students.lambda_rear[0],
        "teacher_epoch": {t.id: config.student_epochs_of(t)[0] for t in config.teacher_pool},
        "layer": {t.id: config.student_layers_of(t)[0] for t in config.teacher_pool},
    }
