"""A whole run's config (``RunConfig``): the sections, the one-or-several teachers rule, the checks across sections
and the resolved defaults every stage agrees on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from ...core.errors import BadInput
from .base import Strict, teacher_splits
from .sections import DataConfig, DistillConfig, ExtractConfig
from .students import StudentsConfig
from .teacher import TeacherConfig


class RunConfig(Strict):
    seed: int = 0
    """Seed of every stage (data subsets, distillation, teachers, views)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Auto: a CUDA GPU when present, else the CPU."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Auto: bf16 where the hardware has it."""
    threads: int = Field(default=0, ge=0)
    """Torch threads per process; 0: torch's default (each local worker: cores // workers)."""
    workers: int = Field(default=1, ge=0)
    """Student cells trained at once in local worker processes; 0: one per core (flows.runner.LocalPool). 1 by
    default (bench/perf.py's pooled_over_sequential_student_grid: docs/benchmarks.md).
    """
    data: DataConfig = DataConfig()
    """The dataset."""
    distill: DistillConfig = DistillConfig()
    """The distillation (or import) of the synthetic set."""
    teacher: TeacherConfig | None = None
    """One teacher (``teacher``) or several (``teachers``, e.g. a 128- and a 512-wide ConvNet): all are trained,
    checkpointed and extracted into the same store; each student is paired with one
    (pipeline/students/pairing.py).
    """
    teachers: list[TeacherConfig] | None = None
    """Several teachers (a list), instead of teacher: all trained, checkpointed and extracted into one store.
    """
    extract: ExtractConfig = ExtractConfig()
    """What goes into the feature store."""
    students: StudentsConfig = StudentsConfig()
    """The student grid and how each cell trains."""

    @model_validator(mode="before")
    @classmethod
    def _one_teacher_key(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        has_one, has_many = raw.get("teacher") is not None, raw.get("teachers") is not None
        if has_one and has_many:
            raise ValueError("set either teacher (one teacher) or teachers (a list), not both")
        return raw if has_one or has_many else {**raw, "teacher": {}}

    @model_validator(mode="after")
    def _cross_stage(self) -> RunConfig:
        pool = self.teacher_pool
        if not pool:
            raise ValueError("teachers must name at least one teacher")
        ids = [t.id for t in pool]
        if len(set(ids)) != len(ids):
            raise ValueError(f"teachers: ids must be unique, got {ids}")
        unknown = sorted(set(self.students.teacher.values()) - set(ids))
        if unknown:
            raise ValueError(f"students.teacher names teachers {unknown} that are not configured: {ids}")
        for teacher in pool:
            self._check_teacher(teacher)
        if self.students.lr_from_synthetic and self.distill.method in ("dm", "dsa", "random"):
            raise ValueError(
                f"students.lr_from_synthetic (protocol {self.students.protocol}) trains with the lr MTT learns; "
                f"distill.method {self.distill.method} learns none"
            )
        if self.students.yardstick and self.students.store:
            raise ValueError(
                "students.yardstick needs this run's teachers; it cannot train from students.store"
            )
        if self.students.yardstick and self.distill.method == "random":
            raise ValueError("students.yardstick: the set is itself a random subset (distill.method random)")
        if "replay" in self.students.view_policies and self.extract.views < 2 and not self.students.store:
            raise ValueError(
                "students.view_policies has replay but extract.views is 1; set extract.views >= 2"
            )
        return self

    def _check_teacher(self, teacher: TeacherConfig) -> None:
        checkpointed = set(teacher.checkpoint_epochs)
        epochs = self.extract_epochs_of(teacher)
        missing = sorted(set(epochs) - checkpointed)
        if missing:
            raise ValueError(
                f"extract.teacher_epochs {missing} are not in teacher {teacher.id}'s checkpoint_epochs "
                f"{sorted(checkpointed)}"
            )
        points, _ = teacher_splits(teacher)
        layers = self.extract_layers_of(teacher)
        unknown = sorted(set(layers) - set(points))
        if unknown:
            raise ValueError(
                f"extract.layers {unknown} are not split points of teacher {teacher.id} ({teacher.arch}): "
                f"{list(points)}"
            )
        not_extracted = sorted(set(self.students.teacher_epochs or []) - set(epochs))
        if not_extracted and not self.students.store:
            raise ValueError(
                f"students.teacher_epochs {not_extracted} not extracted for teacher {teacher.id} "
                f"(extract.teacher_epochs: {epochs})"
            )
        missing_layers = sorted(set(self.students.layers or []) - set(layers))
        if missing_layers and not self.students.store:
            raise ValueError(f"students.layers {missing_layers} not extracted (extract.layers: {layers})")

    # Resolved views of the defaults, so every stage agrees on them.
    @property
    def teacher_pool(self) -> list[TeacherConfig]:
        """Every configured teacher, in config order (the first is the primary one)."""
        return list(self.teachers) if self.teachers is not None else [self.teacher or TeacherConfig()]

    @property
    def primary_teacher(self) -> TeacherConfig:
        return self.teacher_pool[0]

    def teacher_config(self, teacher_id: str) -> TeacherConfig:
        for teacher in self.teacher_pool:
            if teacher.id == teacher_id:
                return teacher
        raise BadInput(
            f"teacher {teacher_id!r} is not configured (teachers: {[t.id for t in self.teacher_pool]})"
        )

    def extract_epochs_of(self, teacher: TeacherConfig) -> list[int]:
        return sorted(self.extract.teacher_epochs or teacher.checkpoint_epochs)

    def extract_layers_of(self, teacher: TeacherConfig) -> list[str]:
        return list(self.extract.layers or [teacher_splits(teacher)[1]])

    def student_epochs_of(self, teacher: TeacherConfig) -> list[int]:
        """The teacher epochs of the student grid for ``teacher`` (default: its last extracted one)."""
        return list(self.students.teacher_epochs or [self.extract_epochs_of(teacher)[-1]])

    def student_layers_of(self, teacher: TeacherConfig) -> list[str]:
        return list(self.students.layers or [self.extract_layers_of(teacher)[0]])

    @property
    def extract_epochs(self) -> list[int]:
        """The primary teacher's extracted epochs."""
        return self.extract_epochs_of(self.primary_teacher)

    @property
    def extract_layers(self) -> list[str]:
        return self.extract_layers_of(self.primary_teacher)

    @property
    def student_teacher_epochs(self) -> list[int]:
        return self.student_epochs_of(self.primary_teacher)

    @property
    def student_layers(self) -> list[str]:
        return self.student_layers_of(self.primary_teacher)

    @property
    def student_teacher_epoch(self) -> int:
        """The primary teacher's reference epoch (the first of the grid)."""
        return self.student_teacher_epochs[0]

    @property
    def student_layer(self) -> str:
        """The primary teacher's reference layer (the first of the grid)."""
        return self.student_layers[0]
