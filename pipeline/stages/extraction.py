"""What an extraction reads (the run's synthetic set and every trained teacher) and where it writes (the run's
store, or a fresh one beside it when the set changed); one checkpoint's extraction and a copy of the run's
features into another store."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...core.errors import BadInput, write_errors_refused
from ...models import probe_model
from ..config import ExtractConfig, RunConfig
from ..extract import TeacherSource, extract_epoch, extract_to_store
from ..synthetic import SyntheticSet, load_synthetic
from ..teacher import load_manifest
from ..training import log
from .run import RunDir, runtime


def teacher_source(run: RunDir, config: RunConfig, teacher_id: str) -> TeacherSource:
    """A trained teacher of the run (its manifest checked complete), with the epochs and layers to extract."""
    teacher = config.teacher_config(teacher_id)
    folder = run.teacher_dir(teacher.id)
    return TeacherSource(
        teacher,
        load_manifest(folder),
        folder,
        config.extract_epochs_of(teacher),
        config.extract_layers_of(teacher),
    )


def extraction_inputs(run: RunDir, config: RunConfig) -> tuple[SyntheticSet, list[TeacherSource]]:
    """What every extraction of the run reads: its synthetic set and every trained teacher."""
    return load_synthetic(run.synthetic), [teacher_source(run, config, t.id) for t in config.teacher_pool]


def stage_extract_epoch(
    run: RunDir, config: RunConfig, target: Path, teacher_id: str, epoch: int, key: str
) -> list[str]:
    """One teacher checkpoint's features (all layers and views) into the prepared store ``target``; resumes the
    epoch's arrays left by a killed extraction under the same stage ``key``."""
    device, _ = runtime(config)
    synthetic = load_synthetic(run.synthetic)
    source = teacher_source(run, config, teacher_id)
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
    run: RunDir,
    config: RunConfig,
    target: str | Path,
    epochs: list[int] | None = None,
    layers: list[str] | None = None,
    extract: ExtractConfig | None = None,
) -> list[str]:
    """The run's synthetic set through its teachers' checkpoints into another store ``target`` (a path or fsspec
    URL): other extract settings, epochs or layers (default: the config's), or another file system."""
    synthetic, teachers = extraction_inputs(run, config)
    teachers = [replace(t, epochs=epochs or t.epochs, layers=layers or t.layers) for t in teachers]
    return extract_to_store(synthetic, teachers, target, extract or config.extract, runtime(config)[0])


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
