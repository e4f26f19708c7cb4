"""The stages before the students: distill the synthetic set, train the teachers, extract their features into the
run's one store."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...models import probe_model
from ...store import writer
from ...store.verify import sealed, structure_problems
from ..config import RunConfig
from ..distill import distill
from ..extract import TeacherSource, prepare_store
from ..formats import files_sha256
from ..synthetic import SyntheticSet
from ..teacher import train_teacher
from ..teacher_import import import_teacher
from .extraction import epoch_bytes, extraction_inputs, stage_extract_epoch, store_to_build
from .integrity import checkpoint_problems, synthetic_problems
from .keys import stage_key
from .run import Run, RunDir, save_zca
from .stage import KeyedStage, build_stage

MapEpochs = Callable[[Path, list[tuple[str, int]], str], None]


class Distill(KeyedStage):
    """The synthetic set: kept while data, distill config, seed and runtime are unchanged."""

    name = "distill"

    def key(self, run: Run) -> str:
        config = run.config
        # The whole section but resume_every (when the state is saved, never what is made); an imported set's
        # files by content.
        section = config.distill.model_dump(mode="json", exclude={"resume_every"})
        imported = files_sha256(config.distill.source.paths) if config.distill.method == "file" else None
        parts = [config.data, run.data_sha256, section, imported, config.seed, run.precision, run.device.type]
        return stage_key("distill", *parts)

    def output(self, run: Run) -> Path:
        return run.dir.synthetic

    def build(self, run: Run, key: str) -> None:
        config = run.config
        experts = run.dir.root / "experts" / config.distill.arch
        save_zca(run.dir, run.data)
        resume = run.resume_point(self.name, key)
        synthetic, _ = distill(
            run.data, config.distill, run.device, run.precision, config.seed, experts, resume
        )
        synthetic.save(run.dir.synthetic)

    def damage(self, run: Run) -> str | None:
        return next(iter(synthetic_problems(run.dir.synthetic)), None)

    def bytes_written(self, run: Run) -> int | None:
        images = run.config.distill.ipc * run.data.num_classes * math.prod(run.data.image_shape) * 4
        return 3 * images  # the set, and a resume point with its optimiser state


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


@dataclass(frozen=True)
class Extract(KeyedStage):
    """Every teacher's features in the run's one store: kept while the synthetic set, the checkpoints (by sha256)
    and the extract config are unchanged. ``map_epochs(target, [(teacher id, epoch)], key)`` extracts the
    checkpoints into the prepared store (None: one after the other here; the flows fan them out as tasks).
    ``fresh``: start from an empty store (``--force``), not from the complete arrays of the one there."""

    map_epochs: MapEpochs | None = None
    fresh: bool = False
    name = "extract"
    _inputs: list = field(default_factory=list, compare=False, repr=False)

    def inputs(self, run: Run) -> tuple[SyntheticSet, list[TeacherSource]]:
        """extraction_inputs(), loaded once for the key and the build."""
        if not self._inputs:
            self._inputs.append(extraction_inputs(run.dir, run.config))
        return self._inputs[0]

    def key(self, run: Run) -> str:
        synthetic, teachers = self.inputs(run)
        return stage_key(
            "extract",
            synthetic.sha256,
            [
                {
                    "id": t.config.id,
                    "arch": t.config.arch,
                    "arch_kwargs": t.config.arch_kwargs,
                    "checkpoints": {
                        c["epoch"]: c["sha256"] for c in t.manifest["checkpoints"] if c["epoch"] in t.epochs
                    },
                    "epochs": t.epochs,
                    "layers": t.layers,
                }
                for t in teachers
            ],
            run.config.extract,
        )

    def output(self, run: Run) -> Path:
        return run.dir.store

    def build(self, run: Run, key: str) -> None:
        synthetic, teachers = self.inputs(run)
        store = run.dir.store
        if self.fresh or (sealed(store) and self.damage(run)):  # a finished store changed afterwards
            shutil.rmtree(store, ignore_errors=True)
        target = store_to_build(store, synthetic.sha256)
        prepare_store(synthetic, teachers, target, run.config.extract)
        items = [(t.config.id, epoch) for t in teachers for epoch in t.epochs]
        if self.map_epochs is None:
            for teacher_id, epoch in items:
                stage_extract_epoch(run.dir, run.config, target, teacher_id, epoch, key)
        else:
            self.map_epochs(target, items, key)
        writer.seal_store(target)
        if target != store:  # swap the rebuilt store in only once it is complete
            stale = store.with_name(f".{store.name}.stale")
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(store, stale)
            os.replace(target, store)
            shutil.rmtree(stale, ignore_errors=True)

    def bytes_written(self, run: Run) -> int | None:
        """Every feature and logit uncompressed (an upper bound: the store compresses)."""
        synthetic, teachers = self.inputs(run)
        epochs = sum(len(t.epochs) * epoch_bytes(synthetic, t, run.config.extract) for t in teachers)
        return synthetic.images.numel() * 4 + epochs

    def damage(self, run: Run) -> str | None:
        problems = structure_problems(run.dir.store)  # no chunk read: the students' readers check contents
        return f"store {run.dir.store}: {problems[0]}" if problems else None


def stage_distill(run: RunDir, config: RunConfig, force: bool = False) -> Path:
    """Distil the synthetic set (Distill; unless ``force``, kept when its inputs are unchanged)."""
    return build_stage(Distill(), Run(run, config), force)


def stage_teacher(run: RunDir, config: RunConfig, force: bool = False) -> Path:
    """Train every teacher (a Teacher stage each). Returns the checkpoints' folder (``checkpoints/<id>/`` each)."""
    state = Run(run, config)
    for teacher in config.teacher_pool:
        build_stage(Teacher(teacher.id), state, force)
    return run.checkpoints


def stage_extract(
    run: RunDir, config: RunConfig, force: bool = False, map_epochs: MapEpochs | None = None
) -> Path:
    """Extract every teacher's features into the one store (Extract; ``map_epochs`` as there)."""
    return build_stage(Extract(map_epochs, fresh=force), Run(run, config), force)


def stage_store(run: RunDir, config: RunConfig) -> dict[str, float]:
    """Distill, teacher and extract one after the other in this process (each kept when its inputs are unchanged):
    what a study needs before its students. Returns the seconds each stage took."""
    seconds = {}
    for name, stage in (("distill", stage_distill), ("teacher", stage_teacher), ("extract", stage_extract)):
        started = time.perf_counter()
        stage(run, config)
        seconds[name] = time.perf_counter() - started
    return seconds
