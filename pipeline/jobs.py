"""A student grid cell (``StudentJob``): the student, its loss mode, the feature axes, the teacher and split it was
paired with, and the seed; and every cell of a grid, each once."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from .config import StudentsConfig
from .losses import LOSS_TERMS


@dataclass(frozen=True)
class StudentJob:
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
    teacher: str | None = None  # the teacher id (pipeline/pairing.py); None: the store's only teacher
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


def uses_features(loss_mode: str) -> bool:
    return bool({"front", "rear"} & set(LOSS_TERMS[loss_mode]))


def make_job(
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
) -> StudentJob:
    """The cell of these axis values, with the axes ``loss_mode`` does not use set to None."""
    terms = LOSS_TERMS[loss_mode]
    if not uses_features(loss_mode):
        return StudentJob(student, loss_mode, seed)
    front = "front" in terms
    return StudentJob(
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


# Where a student's features come from: (teacher id, teacher epoch, layer, student split) per architecture.
Sources = Callable[[str], list[tuple[str, int, str, str]]]


def student_jobs(cfg: StudentsConfig, sources: Sources) -> list[StudentJob]:
    """The grid: student x loss mode x view policy x feature loss x lambda_front x lambda_rear x (paired teacher,
    its epoch, layer) x seed, each cell once (a baseline does not repeat over the feature axes)."""
    axes = itertools.product(
        cfg.archs, cfg.loss_modes, cfg.view_policies, cfg.feature_losses, cfg.lambda_front, cfg.lambda_rear
    )
    by_arch = {arch: sources(arch) for arch in cfg.archs}  # the pairing, once per architecture
    cells = [
        make_job(arch, mode, seed, policy, loss, front, rear, epoch, layer, teacher, split)
        for arch, mode, policy, loss, front, rear in axes
        for teacher, epoch, layer, split in by_arch[arch]
        for seed in cfg.seeds
    ]
    return list(dict.fromkeys(cells))
