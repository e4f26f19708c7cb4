"""The teachers: trained on the real data and checkpointed at several epochs (train.py), or imported from another
code base's checkpoints (imported.py); MTT's expert trajectories, recorded with the same training loop
(experts.py); and the teacher stage, one per configured teacher (stage.py)."""

from .experts import load_trajectories, record_experts
from .imported import import_teacher
from .stage import Teacher, stage_teacher
from .train import (
    build_teacher,
    checkpoint_problems,
    load_checkpoint,
    load_manifest,
    teacher_at,
    train_epoch,
    train_teacher,
)

__all__ = [
    "Teacher",
    "build_teacher",
    "checkpoint_problems",
    "import_teacher",
    "load_checkpoint",
    "load_manifest",
    "load_trajectories",
    "record_experts",
    "stage_teacher",
    "teacher_at",
    "train_epoch",
    "train_teacher",
]
