"""One student cell: the store it reads (opened and checked against the run), its cache key, its training."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...core.errors import BadInput, StudentDiverged
from ...core.io import (
    atomic_write_json,
)
from ...models import module_kinds
from ...store import location
from ...store.reader import FeatureDataset
from ..config import RunConfig, StudentsConfig
from ..jobs import StudentJob
from ..students import StudentContext, front_scale_of, train_student
from ..synthetic import load_synthetic
from ..teacher import teacher_at
from ..training import log, resolve_device, resolve_precision
from .extraction import teacher_source
from .grid import cached_split_shapes, feature_cell
from .keys import cell_finished, cell_record, stage_key
from .run import Run, RunDir, data_for
from .stage import build_stage
from .store_fit import check_store_fits


def student_store(run: RunDir, config: RunConfig) -> str | Path:
    """The store the students read: ``students.store`` (a path or any fsspec URL), else the run's own."""
    return location.normalize(config.students.store) if config.students.store else run.store


def open_student_dataset(
    run: RunDir,
    config: RunConfig,
    epoch: int | None = None,
    layer: str | None = None,
    teacher_id: str | None = None,
) -> FeatureDataset:
    """The store the students read (``teacher_id`` at ``epoch`` and ``layer``, default: the primary teacher's
    reference ones), checked once that it fits the run (store_fit)."""
    epoch = config.student_teacher_epoch if epoch is None else epoch
    teacher_id = teacher_id or config.primary_teacher.id
    dataset = FeatureDataset(
        student_store(run, config),
        teacher_id,
        epoch,
        layer or config.student_layer,
        cache_bytes=config.students.cache_mb << 20,
    )
    check_store_fits(run, config, dataset)
    return dataset


def open_cell_datasets(run: RunDir, config: RunConfig, jobs: list[StudentJob]) -> dict[tuple, FeatureDataset]:
    """One reader per (teacher, epoch, layer) the cells of ``jobs`` read."""
    wheres = dict.fromkeys(feature_cell(config, job) for job in jobs)
    return {(t, e, layer): open_student_dataset(run, config, e, layer, t) for t, e, layer in wheres}


@dataclass(frozen=True)
class StudentCell:
    """One student cell (the Stage protocol): ``students/<job>.json``, whose record carries the cell's cache key
    (store provenance + cell config) in place of a stage marker."""

    job: StudentJob
    dataset: FeatureDataset
    students: StudentsConfig  # student_config(): read once for the key and the training

    @property
    def name(self) -> str:
        return self.job.name

    def key(self, run: Run) -> str:
        return cell_key(self.job, run.config, self.students, self.dataset, run.precision)

    def output(self, run: Run) -> Path:
        return run.dir.student_run(self.job)

    def kept(self, run: Run, key: str) -> bool:
        record = cell_record(self.output(run), key)
        if record is None:
            return False
        log.info("student %s: finished run with the same key, kept (%s)", self.name, self.output(run).name)
        diverged = record.get("diverged")
        if diverged and run.config.students.on_diverge == "fail":
            raise StudentDiverged(self.name, diverged["term"], diverged["epoch"], diverged["value"])
        return True

    def build(self, run: Run, key: str) -> None:
        record = train_student(
            self.job, self.dataset, student_context(run, self.students), online_teacher(run, self.job)
        )
        atomic_write_json(self.output(run), {**record, "cache_key": key})

    def finish(self, run: Run, key: str, started: float) -> None:
        """Nothing: the record written by ``build`` is the cell's marker."""

    def damage(self, run: Run) -> str | None:
        """Nothing to check beyond ``kept``: it read the record and matched its key."""
        return None

    def bytes_written(self, run: Run) -> int | None:
        return None  # one record of a few kB


def student_context(run: Run, students: StudentsConfig) -> StudentContext:
    """What the run's student cells train and are tested with (its test split, device and precision)."""
    data = run.data
    return StudentContext(data.x_test, data.y_test, students, data.num_classes, run.device, run.precision)


def online_teacher(run: Run, job: StudentJob):
    """The teacher checkpoint a cell of view policy online runs on every batch (None for the other policies)."""
    if job.view_policy != "online":
        return None
    teacher_id, epoch, _ = feature_cell(run.config, job)
    source = teacher_source(run.dir, run.config, teacher_id)
    data = run.data
    return teacher_at(
        source.config, source.folder, source.manifest, epoch, data.image_shape, data.num_classes, run.device
    )[0]


def stage_student(
    run: RunDir,
    config: RunConfig,
    job: StudentJob,
    dataset: FeatureDataset | None = None,
    force: bool = False,
) -> Path:
    """Train one student (StudentCell) and write ``students/<job>.json`` atomically; a finished cell with the same
    cache key is kept, not retrained, unless ``force``. ``dataset``: the store reader of the cell's feature cell
    (default: opened and checked here)."""
    state = Run(run, config).configured()
    if dataset is None:
        teacher_id, epoch, layer = feature_cell(config, job)
        dataset = open_student_dataset(run, config, epoch, layer, teacher_id)
    return build_stage(StudentCell(job, dataset, student_config(run, config)), state, force)


def pending_cells(run: RunDir, config: RunConfig, jobs: list[StudentJob]) -> list[StudentJob]:
    """The cells of ``jobs`` without a finished run of the same cache key (what is left to train)."""
    precision = resolve_precision(resolve_device(config.device), config.precision)
    students = student_config(run, config)
    datasets = open_cell_datasets(run, config, jobs)
    return [
        job
        for job in jobs
        if not cell_finished(
            run.student_run(job),
            cell_key(job, config, students, datasets[feature_cell(config, job)], precision),
        )
    ]


def cell_key(job: StudentJob, config: RunConfig, students, dataset: FeatureDataset, precision: str) -> str:
    """sha256 (core.keyed, KEY_SCHEMA) of what one student cell depends on: the cell, its training settings
    (cell_training), the data, the precision and the store's provenance (for a baseline only the synthetic set: it
    never reads a feature)."""
    provenance = dataset.provenance
    if not job.uses_features:
        provenance = {k: provenance[k] for k in ("synthetic_sha256", "normalization")}
    training = cell_training(job, config, students)
    return stage_key("cell", asdict(job), training, config.data, precision, provenance)


def cell_training(job: StudentJob, config: RunConfig, students: StudentsConfig) -> dict[str, Any]:
    """The settings one cell trains with, resolved for it: every cell's (epochs, its architecture's lr and keyword
    arguments, the optimiser, batch, DSA, clipping) and, for a cell that reads teacher features, every feature
    setting (temperature, rear path, batch-norm statistics, views, and its lambda_front factor)."""
    training = students.model_dump(
        mode="json", include={"epochs", "momentum", "weight_decay", "batch_size", "dsa", "grad_clip"}
    )
    training.update(lr=students.lr_for(job.student), arch_kwargs=students.arch_kwargs.get(job.student, {}))
    if job.uses_features:
        features = {"feature_temperature", "rear_path", "rear_bn_stats", "max_views"}
        training.update(students.model_dump(mode="json", include=features))
        training["front_scale"] = front_scale_of(front_shape(config, job), students)
    return training


def front_shape(config: RunConfig, job: StudentJob) -> tuple[int, ...]:
    """The shape of a feature cell's student front at its split (without the batch dim)."""
    data = data_for(config)
    kwargs = config.students.arch_kwargs.get(job.student, {})
    shapes, default = cached_split_shapes(job.student, data.image_shape, data.num_classes, json.dumps(kwargs))
    return shapes[job.split or default]


def student_kinds(arch: str, config: RunConfig) -> frozenset[type]:
    """The module classes a student of ``arch`` (with the config's arch_kwargs, on its data) is made of."""
    data = data_for(config)
    kwargs = json.dumps(config.students.arch_kwargs.get(arch, {}), sort_keys=True)
    return module_kinds(arch, data.image_shape[0], data.num_classes, data.image_shape[-1], kwargs)


def student_config(run: RunDir, config: RunConfig):
    """The students' config, with the lr MTT learned when ``students.lr_from_synthetic`` asks for it."""
    if not config.students.lr_from_synthetic:
        return config.students
    syn_lr = load_synthetic(run.synthetic).extra.get("syn_lr") if run.synthetic.exists() else None
    if syn_lr is None:
        raise BadInput(
            "students.lr_from_synthetic needs a synthetic set distilled with MTT (it saves a learned lr)"
        )
    return config.students.model_copy(update={"lr": float(syn_lr)})
