"""The pipeline stages over a run directory (DESIGN.md layout); the Prefect flows wrap exactly these."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..store import location
from ..store.layout import content_sha256
from ..store.reader import FeatureDataset
from .config import ExtractConfig, RunConfig, dump_config, load_config
from .data import DataSplits, load_data
from .distill import distill
from .errors import BadInput, StudentDiverged
from .extract import TeacherSource, extract_epoch, extract_to_store, prepare_store
from .io import atomic_torch_save, atomic_write_json, atomic_write_text, json_sha256, load_json
from .pairing import Pairing, pair_student, split_shapes
from .report import arm, at_reference, build_results, render_markdown, summary_value, write_plots
from .resume import ResumePoint
from .students import StudentJob, check_store_matches, make_job, student_jobs, train_student
from .synthetic import SyntheticSet, load_synthetic
from .teacher import load_manifest, teacher_at, train_teacher
from .training import configure_threads, log, resolve_device, resolve_precision


@dataclass(frozen=True)
class RunDir:
    """Where each artifact of a run lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic.pt"

    def teacher_dir(self, teacher_id: str) -> Path:
        return self.root / "checkpoints" / teacher_id

    @property
    def store(self) -> Path:
        return self.root / "store.zarr"

    @property
    def zca(self) -> Path:
        return self.root / "zca.pt"

    @property
    def students(self) -> Path:
        return self.root / "students"

    def student_run(self, job: StudentJob) -> Path:
        return self.students / f"{job.name}.json"

    def resume_point(self, name: str) -> Path:
        """``resume/<name>.pt``: the training state a killed stage continues from (removed when it finishes)."""
        return self.root / "resume" / f"{name}.pt"

    def stage_marker(self, stage: str) -> Path:
        """``stages/<stage>.json``: the key of the inputs the stage's output was made from."""
        return self.root / "stages" / f"{stage}.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


def prepare_run(out: Path, config: RunConfig) -> RunDir:
    """Create the run directory (config already validated) and write its resolved config."""
    run = RunDir(Path(out))
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config, dump_config(config))
    return run


def read_run_config(out: Path) -> RunConfig:
    return load_config(RunDir(Path(out)).config)


@functools.lru_cache(maxsize=2)
def _cached_data(data_json: str, seed: int) -> DataSplits:
    from .config import DataConfig

    return load_data(DataConfig.model_validate_json(data_json), seed)


def data_for(config: RunConfig) -> DataSplits:
    """The run's dataset, loaded once per process (every student task of a flow shares it)."""
    return _cached_data(config.data.model_dump_json(), config.seed)


@functools.lru_cache(maxsize=2)
def _data_sha256(data_json: str, seed: int) -> str:
    data = _cached_data(data_json, seed)
    return content_sha256(*(t.numpy() for t in (data.x_train, data.y_train, data.x_test, data.y_test)))


def data_fingerprint(config: RunConfig) -> str:
    """sha256 of the run's (normalised, subset) train and test tensors: a stage keyed on it recomputes when the
    data changes, whatever the files are called."""
    return _data_sha256(config.data.model_dump_json(), config.seed)


def stage_key(*parts: Any) -> str:
    """sha256 of a stage's inputs (configs, fingerprints, runtime)."""
    return json_sha256(list(parts))


def finished(run: RunDir, stage: str, key: str, output: Path) -> bool:
    """Whether ``stage`` already produced ``output`` from the inputs ``key`` stands for."""
    marker = run.stage_marker(stage)
    if not marker.exists() or not output.exists():
        return False
    if load_json(marker, f"{stage} stage marker").get("key") != key:
        return False
    log.info("%s: inputs unchanged (key %s), kept %s", stage, key[:12], output)
    return True


def mark_finished(run: RunDir, stage: str, key: str, output: Path, started: float) -> None:
    record = {
        "stage": stage,
        "key": key,
        "output": str(output),
        "seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write_json(run.stage_marker(stage), record)


def save_zca(run: RunDir, data: DataSplits) -> None:
    """The run's ZCA statistics (mean, transform, eps, sha256) beside its artifacts, when the data is whitened."""
    if data.zca is not None and not run.zca.exists():
        atomic_torch_save(run.zca, data.zca.state())


def _runtime(config: RunConfig) -> tuple[torch.device, str]:
    configure_threads(config.threads)
    device = resolve_device(config.device)
    return device, resolve_precision(device, config.precision)


def stage_distill(run: RunDir, config: RunConfig, force: bool = False) -> Path:
    """Distil the synthetic set; kept when data, distill config, seed and runtime are unchanged (unless ``force``)."""
    started = time.perf_counter()
    device, precision = _runtime(config)
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
    device, precision = _runtime(config)
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
    return run.root / "checkpoints"


def stage_extract(
    run: RunDir, config: RunConfig, force: bool = False, map_epochs: MapEpochs | None = None
) -> Path:
    """Extract every teacher's features into the one store; kept when the synthetic set, the checkpoints (by
    sha256) and the extract config are unchanged (unless ``force``). ``map_epochs(target, [(teacher id, epoch)],
    key)`` extracts the checkpoints into the prepared store (default: one after the other here; the flows can fan
    them out as parallel tasks)."""
    started = time.perf_counter()
    _runtime(config)
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
    device, _ = _runtime(config)
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
    return extract_to_store(synthetic, teachers, target, extract or config.extract, _runtime(config)[0])


def _store_to_build(store: Path, synthetic_sha256: str) -> Path:
    """Where extraction writes: the run's store, or, when it holds features of an earlier synthetic set of this run
    (distill re-ran), a fresh store beside it that replaces it when complete."""
    from ..store.reader import FeatureStore

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


def grid(config: RunConfig) -> list[StudentJob]:
    """Every student cell of the config, each feature cell with its paired teacher and split."""
    return student_jobs(config.students, functools.partial(feature_sources, config))


def feature_sources(config: RunConfig, arch: str) -> list[tuple[str, int, str, str]]:
    """(teacher id, epoch, layer, split) of every feature cell of ``arch``: per layer of the grid, the teacher and
    split the pairing rule (or ``students.teacher`` / ``students.split``) gives, at each of its grid epochs."""
    sources = []
    for layer in dict.fromkeys(name for t in config.teacher_pool for name in config.student_layers_of(t)):
        pairing = pair(config, arch, layer)
        teacher = config.teacher_config(pairing.teacher)
        sources += [(teacher.id, e, layer, pairing.split) for e in config.student_epochs_of(teacher)]
    return sources


def pair(config: RunConfig, arch: str, layer: str) -> Pairing:
    """The teacher (among those with ``layer`` in the grid) and split of a student of ``arch`` (pipeline/pairing)."""
    data = data_for(config)
    students = config.students
    teachers = {
        t.id: _split_shapes(t.arch, data.image_shape, data.num_classes, json.dumps(t.arch_kwargs))[0][layer]
        for t in config.teacher_pool
        if layer in config.student_layers_of(t)
    }
    shapes, default = _split_shapes(
        arch, data.image_shape, data.num_classes, json.dumps(students.arch_kwargs.get(arch, {}))
    )
    if arch in students.split:
        if students.split[arch] not in shapes:
            raise BadInput(
                f"students.split: {arch} has no split point {students.split[arch]!r}: {list(shapes)}"
            )
        shapes, default = {students.split[arch]: shapes[students.split[arch]]}, students.split[arch]
    return pair_student(arch, shapes, default, teachers, students.teacher.get(arch))


@functools.lru_cache(maxsize=64)
def _split_shapes(arch: str, image_shape: tuple[int, ...], num_classes: int, kwargs: str):
    return split_shapes(arch, image_shape, num_classes, **json.loads(kwargs))


def feature_cell(config: RunConfig, job: StudentJob) -> tuple[str, int, str]:
    """(teacher id, epoch, layer) whose store arrays the cell reads (a baseline: the primary teacher's reference
    ones, for the images alone)."""
    if job.layer is None:
        return config.primary_teacher.id, config.student_teacher_epoch, config.student_layer
    return job.teacher or config.primary_teacher.id, job.teacher_epoch, job.layer


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
    reference ones), checked against this run's synthetic set and checkpoint where the run has them."""
    epoch = config.student_teacher_epoch if epoch is None else epoch
    teacher_id = teacher_id or config.primary_teacher.id
    dataset = FeatureDataset(
        student_store(run, config),
        teacher_id,
        epoch,
        layer or config.student_layer,
        cache_bytes=config.students.cache_mb << 20,
    )
    from ..store.reader import FeatureStore

    store = FeatureStore(dataset.path)
    if store.meta["dataset"] != config.data.name:
        raise BadInput(
            f"store {dataset.path} holds features of dataset {store.meta['dataset']!r}, the config asks for {config.data.name!r}"
        )
    stored_zca = store.meta["normalization"].get("zca_sha256")
    run_zca = data_for(config).normalization().get("zca_sha256")
    if stored_zca != run_zca:
        raise BadInput(
            f"store {dataset.path} was computed in another input space (ZCA {stored_zca or 'off'}) than this run's "
            f"data (ZCA {run_zca or 'off'})"
        )
    synthetic_sha = load_synthetic(run.synthetic).sha256 if run.synthetic.exists() else None
    checkpoint_sha = None
    teacher_dir = run.teacher_dir(teacher_id)
    if (teacher_dir / "manifest.json").exists():
        manifest = load_manifest(teacher_dir)
        checkpoint_sha = next((c["sha256"] for c in manifest["checkpoints"] if c["epoch"] == epoch), None)
    check_store_matches(dataset, synthetic_sha, checkpoint_sha)
    return dataset


def open_cell_datasets(run: RunDir, config: RunConfig, jobs: list[StudentJob]) -> dict[tuple, FeatureDataset]:
    """One reader per (teacher, epoch, layer) the cells of ``jobs`` read."""
    wheres = dict.fromkeys(feature_cell(config, job) for job in jobs)
    return {(t, e, layer): open_student_dataset(run, config, e, layer, t) for t, e, layer in wheres}


def stage_student(
    run: RunDir,
    config: RunConfig,
    job: StudentJob,
    dataset: FeatureDataset | None = None,
    force: bool = False,
) -> Path:
    """Train one student and write ``students/<job>.json`` atomically; a finished cell with the same cache key
    (store provenance + cell config) is kept, not retrained, unless ``force``."""
    device, precision = _runtime(config)
    teacher_id, epoch, layer = feature_cell(config, job)
    dataset = dataset or open_student_dataset(run, config, epoch, layer, teacher_id)
    students = student_config(run, config)
    key = cell_key(job, config, students, dataset, precision)
    path = run.student_run(job)
    if not force and cell_finished(path, key):
        log.info("student %s: finished run with the same key, kept (%s)", job.name, path.name)
        diverged = load_json(path, "student run").get("diverged")
        if diverged and students.on_diverge == "fail":
            raise StudentDiverged(job.name, diverged["term"], diverged["epoch"], diverged["value"])
        return path
    data = data_for(config)
    if tuple(data.x_test.shape[1:]) != tuple(dataset_image_shape(dataset)):
        raise BadInput(
            f"store images have shape {dataset_image_shape(dataset)}, the test data {tuple(data.x_test.shape[1:])}"
        )
    online = None
    if job.view_policy == "online":
        source = teacher_source(run, config, teacher_id)
        online, _ = teacher_at(
            source.config, source.folder, source.manifest, epoch, data.image_shape, data.num_classes, device
        )
    record = train_student(
        job, dataset, data.x_test, data.y_test, students, data.num_classes, device, precision, online
    )
    atomic_write_json(path, {**record, "cache_key": key})
    return path


def cell_finished(path: Path, key: str) -> bool:
    return path.exists() and load_json(path, "student run").get("cache_key") == key


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
    """sha256 of what one student run depends on: the cell, the training settings, the test data and the store's
    provenance (for a baseline only the synthetic set: it never reads a feature)."""
    provenance = dataset.provenance
    if not job.uses_features:
        provenance = {k: provenance[k] for k in ("synthetic_sha256", "normalization")}
    training = students.model_dump(
        mode="json",
        include={"epochs", "momentum", "weight_decay", "batch_size", "dsa", "grad_clip"},
    )
    training["lr"] = students.lr_for(job.student)
    if job.feature_loss == "kl":
        training["feature_temperature"] = students.feature_temperature
    if (
        job.uses_features
    ):  # what only a cell with teacher features depends on (baselines stay shared across arms)
        training["rear_path"] = students.rear_path
        if job.view_policy == "replay" and students.max_views is not None:
            training["max_views"] = students.max_views
    what = {
        "job": asdict(job),
        "arch_kwargs": students.arch_kwargs.get(job.student, {}),
        "training": training,
        "data": config.data.model_dump(mode="json"),
        "precision": precision,
        "store": provenance,
    }
    return json_sha256(what)


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


def dataset_image_shape(dataset: FeatureDataset) -> tuple[int, ...]:
    from ..store.reader import FeatureStore

    return tuple(FeatureStore(dataset.path).meta["image_shape"])


def stage_report(run: RunDir, config: RunConfig) -> Path:
    """Collect this config's student runs into results.json, report.md and plots/accuracy.png."""
    runs: list[dict[str, Any]] = []
    _, precision = _runtime(config)
    students = student_config(run, config)
    jobs = grid(config)
    for job in jobs:
        if not run.student_run(job).exists():
            raise BadInput(
                f"student run {run.student_run(job).name} is missing; run the students stage first"
            )
    datasets = open_cell_datasets(run, config, jobs)
    for job in jobs:
        path = run.student_run(job)
        record = load_json(path, "student run")
        if record.get("cache_key") != cell_key(
            job, config, students, datasets[feature_cell(config, job)], precision
        ):
            raise BadInput(
                f"student run {path.name} was trained with another config or store; run the students stage again"
            )
        runs.append(record)
    results = build_results(
        __version__,
        config.model_dump(mode="json"),
        _synthetic_meta(run, config),
        runs,
        reference_cell(config),
        [d.provenance for d in datasets.values()],
    )
    atomic_write_json(run.results, results)
    plots = write_plots(results, run.plots)
    atomic_write_text(run.report, render_markdown(results, plots))
    return run.report


def reference_job(
    config: RunConfig, student: str, loss_mode: str, seed: int, view_policy: str | None = None
) -> StudentJob:
    """The grid cell of ``student`` under ``loss_mode`` with every feature axis at its reference value (its paired
    teacher at that teacher's reference epoch and layer)."""
    ref = reference_cell(config)
    policy = view_policy or ref["view_policy"]
    layer = config.student_layer
    pairing = pair(config, student, layer)
    teacher = config.teacher_config(pairing.teacher)
    return make_job(
        student,
        loss_mode,
        seed,
        policy,
        ref["feature_loss"],
        ref["lambda_front"],
        ref["lambda_rear"],
        config.student_epochs_of(teacher)[0],
        layer,
        teacher.id,
        pairing.split,
    )


def reference_cell(config: RunConfig) -> dict[str, Any]:
    """The first value of every grid axis: the cell the report's analyses vary one axis from. The teacher epoch and
    layer are per teacher id (each student reads its paired teacher)."""
    students = config.students
    return {
        "view_policy": students.view_policies[0],
        "feature_loss": students.feature_loss[0],
        "lambda_front": students.lambda_front[0],
        "lambda_rear": students.lambda_rear[0],
        "teacher_epoch": {t.id: config.student_epochs_of(t)[0] for t in config.teacher_pool},
        "layer": {t.id: config.student_layers_of(t)[0] for t in config.teacher_pool},
    }


def _synthetic_meta(run: RunDir, config: RunConfig) -> dict[str, Any]:
    if run.synthetic.exists():
        synthetic = load_synthetic(run.synthetic)
        return {"method": synthetic.method, "ipc": synthetic.ipc, "sha256": synthetic.sha256}
    from ..store.reader import FeatureStore

    meta = FeatureStore(student_store(run, config)).meta
    return {"method": config.distill.method, "ipc": config.distill.ipc, "sha256": meta["synthetic_sha256"]}


def summary_line(run: RunDir) -> str:
    results = json.loads(run.results.read_text())
    cells = [s for s in results["summary"] if at_reference(s, results["reference"], ("view_policy",))]
    return ", ".join(f"{s['student']}/{arm(s)} {summary_value(s)}" for s in cells)


def diverged_runs(run: RunDir) -> list[dict[str, Any]]:
    """The runs of results.json recorded as diverged (``students.on_diverge: record``)."""
    return [r for r in json.loads(run.results.read_text())["runs"] if r.get("status") == "diverged"]
