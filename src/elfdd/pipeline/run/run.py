"""A run: its directory layout (RunDir), its resolved config, and the data and runtime (device, precision) every stage
of it shares (Run: resolved once per run, the data loaded once per process)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ...core.io import (
    atomic_torch_save,
    atomic_write_text,
    content_sha256,
)
from ...store import location
from ..config import RunConfig, dump_config, load_config
from ..data import DataSplits, load_data
from ..resume import ResumePoint
from ..training import configure_threads, resolve_device, resolve_precision


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

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: one folder per teacher id."""
        return self.root / "checkpoints"

    def teacher_dir(self, teacher_id: str) -> Path:
        return self.checkpoints / teacher_id

    @property
    def store(self) -> Path:
        return self.root / "store.zarr"

    @property
    def zca(self) -> Path:
        return self.root / "zca.pt"

    @property
    def students(self) -> Path:
        return self.root / "students"

    def record_of(self, cell: str) -> Path:
        """``students/<cell>.json``: the record of the grid cell named ``cell``."""
        return self.students / f"{cell}.json"

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

    @property
    def yardstick(self) -> Path:
        """``yardstick/``: the run of the random-subset yardstick (``students.yardstick``)."""
        return self.root / "yardstick"

    @property
    def full_data(self) -> Path:
        """``full_data/``: the full-data references (``students.full_data``) unless their config names a folder."""
        return self.root / "full_data"


class Run:
    """One run as its stages see it: ``dir`` (the layout), ``config`` (validated), the runtime resolved once, the
    data loaded once per process, and the resume point of any of its keyed stages."""

    def __init__(self, root: RunDir | Path | str, config: RunConfig):
        self.dir = root if isinstance(root, RunDir) else RunDir(Path(root))
        self.config = config

    @functools.cached_property
    def runtime(self) -> tuple[torch.device, str]:
        return runtime(self.config)

    def configured(self) -> Run:
        """This run with its threads, device and precision resolved: before a stage reads, hashes or opens
        anything, so every stage computes with the same thread count."""
        _ = self.runtime
        return self

    @property
    def device(self) -> torch.device:
        return self.runtime[0]

    @property
    def precision(self) -> str:
        return self.runtime[1]

    @property
    def data(self) -> DataSplits:
        return data_for(self.config)

    @property
    def data_sha256(self) -> str:
        return data_fingerprint(self.config)

    def resume_point(self, stage: str, key: str) -> ResumePoint:
        return ResumePoint(self.dir.resume_point(stage), key)


def prepare_run(out: Path | str, config: RunConfig) -> Run:
    """Create the run directory (config already validated), write its resolved config and return the run."""
    layout = RunDir(Path(out))
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.config, dump_config(config))
    return Run(layout, config)


def read_run_config(out: Path | str) -> RunConfig:
    return load_config(RunDir(Path(out)).config)


def open_run(out: Path | str) -> Run:
    """The run in directory ``out`` with its own config.yaml."""
    return Run(Path(out), read_run_config(out))


@functools.lru_cache(maxsize=2)
def _cached_data(data_json: str, seed: int) -> DataSplits:
    from ..config import DataConfig

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


def save_zca(run: RunDir, data: DataSplits) -> None:
    """The run's ZCA statistics (mean, transform, eps, sha256) beside its artifacts, when the data is whitened."""
    if data.zca is not None and not run.zca.exists():
        atomic_torch_save(run.zca, data.zca.state())


def runtime(config: RunConfig) -> tuple[torch.device, str]:
    configure_threads(config.threads)
    device = resolve_device(config.device)
    return device, resolve_precision(device, config.precision)


def recorded_checkpoints(store: str | Path) -> dict[str, dict[int, str]]:
    """The sha256 of every teacher checkpoint (per teacher id and epoch) that the run directory holding ``store``
    recorded in its teacher manifests; empty for a store outside a run directory (a URL, a copy)."""
    if location.is_url(store):
        return {}
    recorded = {}
    for manifest in sorted(RunDir(Path(store).parent).checkpoints.glob("*/manifest.json")):
        try:
            held = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a damaged manifest is the teacher stage's to report, not the store's
        recorded[manifest.parent.name] = {c["epoch"]: c["sha256"] for c in held.get("checkpoints", [])}
    return recorded
