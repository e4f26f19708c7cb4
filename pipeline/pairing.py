"""Which teacher and which split each student learns from: the rule users read in the report.

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

from dataclasses import dataclass

from ..core.errors import BadInput
from ..models import probe_model


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


def split_shapes(
    arch: str, image_shape: tuple[int, ...], num_classes: int, **kwargs
) -> tuple[dict[str, tuple[int, ...]], str]:
    """Feature shape at every split point of ``arch`` (one probe on the CPU) and its default split."""
    model = probe_model(arch, image_shape[0], num_classes, image_shape[-1], **kwargs)
    return {s: tuple(model.feature_shape(image_shape, s)) for s in model.split_points}, model.default_split
