"""The stages before the students: distill the synthetic set, train the teachers, extract their features into the
run's one store."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ...core.errors import BadInput
from ..config import ExtractConfig, RunConfig
from ..distill import distill
from ..extract import TeacherSource, extract_epoch, extract_to_store, prepare_store
from ..resume import ResumePoint
from ..synthetic import SyntheticSet, load_synthetic
from ..teacher import load_manifest, train_teacher
from ..training import log
from .keys import finished, mark_finished, stage_key
from .run import RunDir, data_fingerprint, data_for, runtime, save_zca


def stage_distill(run: RunDir, config: RunConfig, force: bool = False) -> Path:
    """Distil the synthetic set; kept when data, distill config, seed and runtime are unchanged (unless ``force``)."""
    started = time.perf_counter()
    device, precision = runtime(config)
    distill_cfg = config.distill.model_dump(mode="json", exclude={"resume_every"})  # resume_every: no effect
    key = stage_key(
        "distill", config.data, data_fingerprint(config), distill_cfg, config.seed, precision, device.type
    )
    if not force and finished(run, "distill", key, run.synthetic):
        return run.synthetic
    experts = run.root / "experts" / config.distill.arch
    data = data_for(config)
    save_zca(run, data)
    resume = ResumePoint(run.resume_point("distill"), key)
    synthetic, _ = distill(data, config.distill, device, precision, config.seed, experts, resume)
    synthetic.save(run.synthetic)
    mark_finished(run, "distill", key, run.synthetic, started)
    return run.synthetic


def stage_teacher(run: RunDir, config: RunConfig, force: bool = False) -> Path:
    """Train every teacher; each is kept when data, its config, seed and runtime are unchanged (unless ``force``).
    Returns the folder of the checkpoints (``checkpoints/<id>/`` per teacher)."""
    device, precision = runtime(config)
    for teacher in config.teacher_pool:
        started = time.perf_counter()
        out = run.teacher_dir(teacher.id)
        stage = f"teacher-{teacher.id}"
        key = stage_key(
            "teacher", config.data, data_fingerprint(config), teacher, config.seed, precision, device.type
        )
        if not force and finished(run, stage, key, out / "manifest.json"):
            continue
        save_zca(run, data_for(config))
        resume = ResumePoint(run.resume_point(stage), key)
        train_teacher(data_for(config), teacher, out, device, precision, config.seed, resume)
        mark_finished(run, stage, key, out / "manifest.json", started)
    return run.checkpoints


def stage_extract(
    run: RunDir, config: RunConfig, force: bool = False, map_epochs: MapEpochs | None = None
) -> Path:
    """Extract every teacher's features into the one store; kept when the synthetic set, the checkpoints (by
    sha256) and the extract config are unchanged (unless ``force``). ``map_epochs(target, [(teacher id, epoch)],
    key)`` extracts the checkpoints into the prepared store (default: one after the other here; the flows can fan
    them out as parallel tasks)."""
    started = time.perf_counter()
    runtime(config)
    synthetic, teachers = extraction_inputs(run, config)
    key = stage_key(
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
        config.extract,
    )
    if not force and finished(run, "extract", key, run.store):
        return run.store
    target = _store_to_build(run.store, synthetic.sha256)
    prepare_store(synthetic, teachers, target, config.extract)
    items = [(t.config.id, epoch) for t in teachers for epoch in t.epochs]
    if map_epochs is None:
        for teacher_id, epoch in items:
            stage_extract_epoch(run, config, target, teacher_id, epoch, key)
    else:
        map_epochs(target, items, key)
    if target != run.store:  # swap the rebuilt store in only once it is complete
        stale = run.store.with_name(f".{run.store.name}.stale")
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(run.store, stale)
        os.replace(target, run.store)
        shutil.rmtree(stale, ignore_errors=True)
    mark_finished(run, "extract", key, run.store, started)
    return run.store


MapEpochs = Callable[[Path, list[tuple[str, int]], str], None]


def stage_store(run: RunDir, config: RunConfig) -> dict[str, float]:
    """Distill, teacher and extract one after the other in this process (each kept when its inputs are unchanged):
    what a study needs before its students. Returns the seconds each stage took."""
    seconds = {}
    for name, stage in (("distill", stage_distill), ("teacher", stage_teacher), ("extract", stage_extract)):
        started = time.perf_counter()
        stage(run, config)
        seconds[name] = time.perf_counter() - started
    return seconds


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
    return extract_epoch(
        synthetic, teacher_source(run, config, teacher_id), target, epoch, config.extract, device, key
    )


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


def _store_to_build(store: Path, synthetic_sha256: str) -> Path:
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
