"""The teacher stage: one per configured teacher, its checkpoints and manifest (``checkpoints/<id>/``), trained on
the real data or imported, kept while its inputs are unchanged, resumable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...models import probe_model
from ..formats import files_sha256
from ..run import KeyedStage, Run, build_stage, save_zca, stage_key
from .imported import import_teacher
from .train import checkpoint_problems, train_teacher


@dataclass(frozen=True)
class Teacher(KeyedStage):
    """One teacher's checkpoints and manifest (``checkpoints/<id>/``): kept while data, its config, seed and runtime
    are unchanged."""

    teacher_id: str

    @property
    def name(self) -> str:
        return f"teacher-{self.teacher_id}"

    def key(self, run: Run) -> str:
        config = run.config
        teacher = config.teacher_config(self.teacher_id)
        imported = (
            files_sha256(teacher.paths, f"teacher {teacher.id}: teacher.paths")
            if teacher.source != "train"
            else None
        )
        spec = teacher.model_dump(mode="json")
        parts = [config.data, run.data_sha256, spec, imported, config.seed, run.precision, run.device.type]
        return stage_key("teacher", *parts)

    def output(self, run: Run) -> Path:
        return run.dir.teacher_dir(self.teacher_id) / "manifest.json"

    def build(self, run: Run, key: str) -> None:
        save_zca(run.dir, run.data)
        teacher = run.config.teacher_config(self.teacher_id)
        out = run.dir.teacher_dir(self.teacher_id)
        if teacher.source != "train":
            import_teacher(run.data, teacher, out, run.device, run.precision)
            return
        resume = run.resume_point(self.name, key)
        train_teacher(run.data, teacher, out, run.device, run.precision, run.config.seed, resume)

    def damage(self, run: Run) -> str | None:
        return next(iter(checkpoint_problems(run.dir.teacher_dir(self.teacher_id))), None)

    def bytes_written(self, run: Run) -> int | None:
        teacher = run.config.teacher_config(self.teacher_id)
        channels, size = run.data.image_shape[0], run.data.image_shape[-1]
        model = probe_model(teacher.arch, channels, run.data.num_classes, size, **teacher.arch_kwargs)
        weights = 4 * sum(p.numel() for p in model.parameters())
        return weights * (len(teacher.checkpoint_epochs) + 2)  # checkpoints, and a resume point with momentum


def stage_teacher(run: Run, force: bool = False) -> Path:
    """Train every teacher (a Teacher stage each). Returns the checkpoints' folder (``checkpoints/<id>/`` each)."""
    for teacher in run.config.teacher_pool:
        build_stage(Teacher(teacher.id), run, force)
    return run.dir.checkpoints
