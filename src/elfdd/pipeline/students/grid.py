"""The student grid: a :class:`Cell` (the student, its loss mode, the feature axes, the teacher and split it was
paired with, and the seed), every cell of a config each once, and the reference cell the report varies one axis
from."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..losses import LOSS_TERMS, TEACHER_TERMS
from .pairing import student_plan

if TYPE_CHECKING:
    from ..config import RunConfig


@dataclass(frozen=True)
class Cell:
    """One cell of the student grid. The feature axes are None where the loss mode does not use them, so one
    baseline serves every lambda, layer and teacher epoch."""

    student: str
    loss_mode: str
    seed: int
    view_policy: str | None = None
    feature_loss: str | None = None
    lambda_front: float | None = None
    lambda_rear: float | None = None
    teacher_epoch: int | None = None
    layer: str | None = None
    teacher: str | None = None  # the teacher id (pairing.py); None: the store's only teacher
    split: str | None = None  # the student's split point; None: its default split

    @property
    def name(self) -> str:
        """A file-safe label naming every axis of the cell."""
        parts = [self.student, self.loss_mode]
        if self.view_policy not in (None, "clean"):
            parts.append(self.view_policy)
        loss = [
            v
            for v in (
                self.feature_loss,
                None if self.lambda_front is None else f"f{self.lambda_front:g}",
                None if self.lambda_rear is None else f"r{self.lambda_rear:g}",
            )
            if v is not None
        ]
        if loss:
            parts.append("_".join(loss))
        if self.layer is not None:
            teacher = f"{self.teacher}_" if self.teacher is not None else ""
            parts.append(f"{teacher}{self.layer}_e{self.teacher_epoch}")
        return "__".join([*parts, f"seed{self.seed}"])

    @property
    def uses_features(self) -> bool:
        return uses_features(self.loss_mode)

    @property
    def uses_logits(self) -> bool:
        return uses_logits(self.loss_mode)


def uses_features(loss_mode: str) -> bool:
    """Whether a loss mode reads what the teacher made of the synthetic set (features or logits)."""
    return bool(TEACHER_TERMS & set(LOSS_TERMS[loss_mode]))


def uses_logits(loss_mode: str) -> bool:
    return "logit" in LOSS_TERMS[loss_mode]


def make_cell(
    student: str,
    loss_mode: str,
    seed: int,
    view_policy: str,
    feature_loss: str,
    lambda_front: float,
    lambda_rear: float,
    teacher_epoch: int,
    layer: str,
    teacher: str | None = None,
    split: str | None = None,
) -> Cell:
    """The cell of these axis values, with the axes ``loss_mode`` does not use set to None."""
    terms = LOSS_TERMS[loss_mode]
    if not uses_features(loss_mode):
        return Cell(student, loss_mode, seed)
    front = "front" in terms
    return Cell(
        student,
        loss_mode,
        seed,
        view_policy,
        feature_loss if front else None,
        lambda_front if front else None,
        lambda_rear if "rear" in terms else None,
        teacher_epoch,
        layer,
        teacher,
        split,
    )


def grid(config: RunConfig) -> list[Cell]:
    """Every cell of the config: student x loss mode x view policy x feature loss x lambda_front x lambda_rear x
    (paired teacher, its epoch, layer) x seed, each once (a baseline does not repeat over the feature axes); each
    feature cell with the teacher and split of the pairing table."""
    students = config.students
    axes = itertools.product(
        students.archs,
        students.loss_modes,
        students.view_policies,
        students.feature_losses,
        students.lambda_front,
        students.lambda_rear,
    )
    sources = {arch: feature_sources(config, arch) for arch in students.archs}
    cells = [
        make_cell(arch, mode, seed, policy, loss, front, rear, epoch, layer, teacher, split)
        for arch, mode, policy, loss, front, rear in axes
        for teacher, epoch, layer, split in sources[arch]
        for seed in students.seeds
    ]
    return list(dict.fromkeys(cells))


def feature_sources(config: RunConfig, arch: str) -> list[tuple[str, int, str, str]]:
    """(teacher id, epoch, layer, split) of every feature cell of ``arch``: per layer of the grid, the teacher and
    split of its pairing, at each of that teacher's grid epochs."""
    sources = []
    for layer, pairing in student_plan(config, arch).pairings.items():
        teacher = config.teacher_config(pairing.teacher)
        sources += [(teacher.id, e, layer, pairing.split) for e in config.student_epochs_of(teacher)]
    return sources


def feature_cell(config: RunConfig, cell: Cell) -> tuple[str, int, str]:
    """(teacher id, epoch, layer) whose store arrays the cell reads (a baseline: the primary teacher's reference
    ones, for the images alone)."""
    if cell.layer is None:
        return config.primary_teacher.id, config.student_teacher_epoch, config.student_layer
    assert cell.teacher_epoch is not None  # a cell with a layer has its teacher epoch (grid)
    return cell.teacher or config.primary_teacher.id, cell.teacher_epoch, cell.layer


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
