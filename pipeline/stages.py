"""The pipeline stages over a run directory (DESIGN.md layout); the Prefect flows wrap exactly these."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..store.reader import FeatureDataset
from .config import RunConfig, dump_config, load_config
from .data import DataSplits, load_data
from .distill import distill
from .errors import BadInput
from .extract import extract_to_store
from .io import atomic_torch_save, atomic_write_json, atomic_write_text, load_json
from .report import arm, build_results, plot_accuracy, render_markdown
from .students import StudentJob, check_store_matches, student_jobs, train_student
from .synthetic import load_synthetic
from .teacher import load_manifest, train_teacher
from .training import configure_threads, resolve_device, resolve_precision


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


def save_zca(run: RunDir, data: DataSplits) -> None:
    """The run's ZCA statistics (mean, transform, eps, sha256) beside its artifacts, when the data is whitened."""
    if data.zca is not None and not run.zca.exists():
        atomic_torch_save(run.zca, data.zca.state())


def _runtime(config: RunConfig) -> tuple[torch.device, str]:
    configure_threads(config.threads)
    device = resolve_device(config.device)
    return device, resolve_precision(device, config.precision)


def stage_distill(run: RunDir, config: RunConfig) -> Path:
    device, precision = _runtime(config)
    experts = run.root / "experts" / config.distill.arch
    data = data_for(config)
    save_zca(run, data)
    synthetic, _ = distill(data, config.distill, device, precision, config.seed, experts)
    synthetic.save(run.synthetic)
    return run.synthetic


def stage_teacher(run: RunDir, config: RunConfig) -> Path:
    device, precision = _runtime(config)
    out = run.teacher_dir(config.teacher.id)
    save_zca(run, data_for(config))
    train_teacher(data_for(config), config.teacher, out, device, precision, config.seed)
    return out / "manifest.json"


def stage_extract(run: RunDir, config: RunConfig) -> Path:
    device, _ = _runtime(config)
    synthetic = load_synthetic(run.synthetic)
    teacher_dir = run.teacher_dir(config.teacher.id)
    manifest = load_manifest(teacher_dir)
    extract_to_store(
        synthetic,
        config.teacher,
        manifest,
        teacher_dir,
        run.store,
        config.extract_epochs,
        config.extract_layers,
        config.extract,
        device,
    )
    return run.store


def student_store(run: RunDir, config: RunConfig) -> Path:
    return Path(config.students.store) if config.students.store else run.store


def open_student_dataset(run: RunDir, config: RunConfig) -> FeatureDataset:
    """The store the students read, checked against this run's synthetic set and checkpoint where the run has them."""
    dataset = FeatureDataset(
        student_store(run, config),
        config.teacher.id,
        config.student_teacher_epoch,
        config.student_layer,
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
    teacher_dir = run.teacher_dir(config.teacher.id)
    if (teacher_dir / "manifest.json").exists():
        manifest = load_manifest(teacher_dir)
        checkpoint_sha = next(
            (c["sha256"] for c in manifest["checkpoints"] if c["epoch"] == config.student_teacher_epoch), None
        )
    check_store_matches(dataset, synthetic_sha, checkpoint_sha)
    return dataset


def stage_student(
    run: RunDir, config: RunConfig, job: StudentJob, dataset: FeatureDataset | None = None
) -> Path:
    """Train one student and write ``students/<job>.json`` atomically."""
    device, precision = _runtime(config)
    dataset = dataset or open_student_dataset(run, config)
    data = data_for(config)
    if tuple(data.x_test.shape[1:]) != tuple(dataset_image_shape(dataset)):
        raise BadInput(
            f"store images have shape {dataset_image_shape(dataset)}, the test data {tuple(data.x_test.shape[1:])}"
        )
    record = train_student(
        job,
        dataset,
        data.x_test,
        data.y_test,
        student_config(run, config),
        data.num_classes,
        device,
        precision,
    )
    atomic_write_json(run.student_run(job), record)
    return run.student_run(job)


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
    for job in student_jobs(config.students):
        path = run.student_run(job)
        if not path.exists():
            raise BadInput(f"student run {path.name} is missing; run the students stage first")
        runs.append(load_json(path, "student run"))
    store_meta = _synthetic_meta(run, config)
    results = build_results(__version__, config.model_dump(mode="json"), store_meta, runs)
    results["teacher_epoch"], results["layer"] = config.student_teacher_epoch, config.student_layer
    atomic_write_json(run.results, results)
    plot = run.plots / "accuracy.png"
    plot_accuracy(results, plot)
    atomic_write_text(run.report, render_markdown(results, plot.name))
    return run.report


def _synthetic_meta(run: RunDir, config: RunConfig) -> dict[str, Any]:
    if run.synthetic.exists():
        synthetic = load_synthetic(run.synthetic)
        return {"method": synthetic.method, "ipc": synthetic.ipc, "sha256": synthetic.sha256}
    from ..store.reader import FeatureStore

    meta = FeatureStore(student_store(run, config)).meta
    return {"method": config.distill.method, "ipc": config.distill.ipc, "sha256": meta["synthetic_sha256"]}


def summary_line(run: RunDir) -> str:
    results = json.loads(run.results.read_text())
    return ", ".join(f"{s['student']}/{arm(s)} {100 * s['mean']:.1f}%" for s in results["summary"])
