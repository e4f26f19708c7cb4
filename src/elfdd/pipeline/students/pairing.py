"""Which teacher and which split each student learns from: the rule users read in the report, computed once per
(architecture, config) into the pairing table that the grid, the cells' keys and their training all read.

1. ``students.teacher: {arch: id}`` names the teacher of an architecture; otherwise every configured teacher is a
   candidate, in config order.
2. **matched**: the first of the student's split points (its default split first, then the others in order) whose
   feature has exactly a candidate teacher's feature shape; no adapter (the reference's ``cross_128`` /
   ``cross_512`` pools: ConvNet -> the 128-wide ConvNet, ResNet18 and VGG11 -> the 512-wide one).
3. **spatial**: else the first split (same order) with a candidate's spatial size, with the teacher of the nearest
   channel count: 1x1-conv adapters on the channels only (AlexNet's 192x4x4, MobileNet's 24x4x4).
4. **adapted**: else the default split and the first candidate, with learned resize or linear adapters (a student
   without a feature map of the teacher's size: the MLP's vectors, LeNet's 5x5).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core.errors import BadInput
from ...models import Anatomy, anatomy_of
from ..data import data_shape

if TYPE_CHECKING:
    from ..config import RunConfig, StudentsConfig


@dataclass(frozen=True)
class Pairing:
    student: str
    teacher: str
    split: str
    student_shape: tuple[int, ...]
    teacher_shape: tuple[int, ...]
    rule: str  # matched | spatial | adapted

    @property
    def needs_adapter(self) -> bool:
        return self.student_shape != self.teacher_shape


def _spatial(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return shape[1:] if len(shape) == 3 else None


def pair_student(
    student: str,
    split_shapes: dict[str, tuple[int, ...]],
    default_split: str,
    teacher_shapes: dict[str, tuple[int, ...]],
    explicit: str | None = None,
) -> Pairing:
    """Pair a student (its split points' feature shapes, default first) with a teacher (feature shape by id)."""
    if explicit is not None:
        if explicit not in teacher_shapes:
            raise BadInput(f"students.teacher: {student} -> {explicit!r} is not a configured teacher")
        candidates = {explicit: teacher_shapes[explicit]}
    else:
        candidates = dict(teacher_shapes)
    splits = [default_split, *(s for s in split_shapes if s != default_split)]
    for split in splits:
        for teacher, shape in candidates.items():
            if split_shapes[split] == shape:
                return Pairing(student, teacher, split, shape, shape, "matched")
    for split in splits:
        size = _spatial(split_shapes[split])
        fits = [t for t, shape in candidates.items() if size is not None and _spatial(shape) == size]
        if fits:
            channels = split_shapes[split][0]
            teacher = min(fits, key=lambda t: abs(candidates[t][0] - channels))
            return Pairing(student, teacher, split, split_shapes[split], candidates[teacher], "spatial")
    teacher = next(iter(candidates))
    return Pairing(
        student, teacher, default_split, split_shapes[default_split], candidates[teacher], "adapted"
    )


@dataclass(frozen=True)
class StudentPlan:
    """One row of the pairing table: a student architecture as the config builds it (its :class:`Anatomy`, probed
    once), the split points the grid may cut it at, and its pairing with a teacher for every layer of the grid."""

    anatomy: Anatomy
    pairings: dict[str, Pairing]  # grid layer -> the teacher and split of the student's feature cells

    @property
    def arch(self) -> str:
        return self.anatomy.arch

    def front_scale(self, split: str | None, students: StudentsConfig) -> float:
        """The factor on lambda_front of a cell cut at ``split``: ``students.vector_front_scale`` where the front
        ends in a vector (no spatial stage, e.g. the MLP), 1 for a feature map. The one place this rule lives."""
        return students.vector_front_scale if len(self.anatomy.front_shape(split)) == 1 else 1.0


def pairing_table(config: RunConfig) -> dict[str, StudentPlan]:
    """Every student architecture of the config -> its :class:`StudentPlan`: each architecture (student or teacher)
    probed once, the dataset's shape read from its headers (pipeline/data.data_shape), not by loading it."""
    return {arch: student_plan(config, arch) for arch in config.students.archs}


def student_plan(config: RunConfig, arch: str) -> StudentPlan:
    """The row of ``arch`` (a student of the config, or any registered architecture the caller trains as one),
    computed once per (config, architecture)."""
    return _student_plan(config.model_dump_json(), arch)


@functools.lru_cache(maxsize=64)
def _student_plan(config_json: str, arch: str) -> StudentPlan:
    from ..config import RunConfig

    return _plan(RunConfig.model_validate_json(config_json), arch)


def _plan(config: RunConfig, arch: str) -> StudentPlan:
    shape = data_shape(config.data)
    students = config.students
    anatomy = anatomy_of(arch, shape.image_shape, shape.num_classes, students.arch_kwargs.get(arch, {}))
    shapes, default = anatomy.split_shapes, anatomy.default_split
    if arch in students.split:
        split = students.split[arch]
        if split not in shapes:
            raise BadInput(f"students.split: {arch} has no split point {split!r}: {list(shapes)}")
        shapes, default = {split: shapes[split]}, split
    pairings = {}
    for layer in dict.fromkeys(name for t in config.teacher_pool for name in config.student_layers_of(t)):
        teachers = {
            t.id: anatomy_of(t.arch, shape.image_shape, shape.num_classes, t.arch_kwargs).split_shapes[layer]
            for t in config.teacher_pool
            if layer in config.student_layers_of(t)
        }
        pairings[layer] = pair_student(arch, shapes, default, teachers, students.teacher.get(arch))
    return StudentPlan(anatomy, pairings)
