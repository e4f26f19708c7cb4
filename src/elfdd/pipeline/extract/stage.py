"""The extract stage: every teacher's features of the synthetic set in the run's one store. What it reads (the set
and every trained teacher), where it writes (the run's store, or a fresh one beside it when the set changed), one
checkpoint's extraction (a task of its own in the flows) and a copy of the run's features into another store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ...core.errors import BadInput, write_errors_refused
from ...models import probe_model
from ...store import writer
from ...store.verify import sealed, structure_problems
from ..config import ExtractConfig
from ..run import KeyedStage, Run, build_stage, stage_key
from ..synthetic import SyntheticSet, load_synthetic
from ..teachers import load_manifest
from ..training import log
from .features import TeacherSource, extract_epoch, extract_to_store, prepare_store

MapEpochs = Callable[[Path, list[tuple[str, int]], str], None]


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
            self._inputs.append(extraction_inputs(run))
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
                stage_extract_epoch(run, target, teacher_id, epoch, key)
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


def stage_extract(run: Run, force: bool = False, map_epochs: MapEpochs | None = None) -> Path:
    """Extract every teacher's features into the one store (Extract; ``map_epochs`` as there)."""
    return build_stage(Extract(map_epochs, fresh=force), run, force)


def teacher_source(run: Run, teacher_id: str) -> TeacherSource:
    """A trained teacher of the run (its manifest checked complete), with the epochs and layers to extract."""
    config = run.config
    teacher = config.teacher_config(teacher_id)
    folder = run.dir.teacher_dir(teacher.id)
    return TeacherSource(
        teacher,
        load_manifest(folder),
        folder,
        config.extract_epochs_of(teacher),
        config.extract_layers_of(teacher),
    )


def extraction_inputs(run: Run) -> tuple[SyntheticSet, list[TeacherSource]]:
    """What every extraction of the run reads: its synthetic set and every trained teacher."""
    return load_synthetic(run.dir.synthetic), [teacher_source(run, t.id) for t in run.config.teacher_pool]


def stage_extract_epoch(run: Run, target: Path, teacher_id: str, epoch: int, key: str) -> list[str]:
    """One teacher checkpoint's features (all layers and views) into the prepared store ``target``; resumes the
    epoch's arrays left by a killed extraction under the same stage ``key``."""
    config, device = run.config, run.device
    synthetic = load_synthetic(run.dir.synthetic)
    source = teacher_source(run, teacher_id)
    where = str(target / "teachers" / teacher_id / f"epoch_{epoch:04d}")
    # In a task of its own: a full disk is one line here too, naming the epoch's folder (zarr's errors name none).
    with write_errors_refused(lambda: epoch_bytes(synthetic, source, config.extract), where):
        return extract_epoch(synthetic, source, target, epoch, config.extract, device, key)


def epoch_bytes(synthetic: SyntheticSet, source: TeacherSource, cfg: ExtractConfig) -> int:
    """The bytes of one checkpoint's features and logits, uncompressed (an upper bound: the store compresses)."""
    shape = tuple(synthetic.images.shape[1:])
    arch = source.config
    model = probe_model(arch.arch, shape[0], synthetic.num_classes, shape[-1], **arch.arch_kwargs)
    per_view = sum(int(np.prod(model.feature_shape(shape, layer))) for layer in source.layers)
    per_view = per_view * np.dtype(cfg.dtype).itemsize + 4 * synthetic.num_classes
    return len(synthetic.images) * cfg.views * per_view


def extract_run_store(
    run: Run,
    target: str | Path,
    epochs: list[int] | None = None,
    layers: list[str] | None = None,
    extract: ExtractConfig | None = None,
) -> list[str]:
    """The run's synthetic set through its teachers' checkpoints into another store ``target`` (a path or fsspec
    URL): other extract settings, epochs or layers (default: the config's), or another file system."""
    synthetic, teachers = extraction_inputs(run)
    teachers = [replace(t, epochs=epochs or t.epochs, layers=layers or t.layers) for t in teachers]
    return extract_to_store(synthetic, teachers, target, extract or run.config.extract, run.device)


def store_to_build(store: Path, synthetic_sha256: str) -> Path:
    """Where extraction writes: the run's store, or, when it holds features of an earlier synthetic set of this run
    (distill re-ran), a fresh store beside it that replaces it when complete."""
    from ...store.reader import FeatureStore

    if not store.exists():
        return store
    try:
        held = FeatureStore(store).meta["synthetic_sha256"]
    except BadInput:  # killed before its root attributes were written: nothing in it is usable
        log.info("extract: %s was left unfinished before any feature; starting it over", store)
        shutil.rmtree(store)
        return store
    if held == synthetic_sha256:
        return store
    building = store.with_name(f".{store.name}.rebuild")
    shutil.rmtree(building, ignore_errors=True)
    return building
