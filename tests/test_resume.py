"""Resume after SIGKILL: each stage, killed mid-way in a child process, re-run, ends with exactly the outputs of an
uninterrupted run and keeps what the killed run had finished."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from elfdd.core.io import content_sha256
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config
from elfdd.store.reader import FeatureStore

pytestmark = pytest.mark.slow  # runs killed with SIGKILL and run again

# Fashion-MNIST, small but with enough steps that a kill lands inside a stage.
RUN = [
    "threads=1",
    "precision=fp32",
    "data.train_subset=1000",
    "data.test_subset=200",
    "distill.ipc=2",
    "distill.arch_kwargs={width: 16}",
    "distill.iterations=30",
    "distill.batch_real=32",
    "distill.resume_every=2",
    "teacher.arch_kwargs={width: 16}",
    "teacher.epochs=6",
    "teacher.checkpoint_epochs=[0,2,4,6]",
    "teacher.batch_size=32",
    "extract.views=8",
    "students.archs=[convnet,mlp]",
    "students.loss_modes=[task,front_rear_task]",
    "students.epochs=20",
    "students.seeds=[0]",
]
CHILD = """
import logging
import sys
from pathlib import Path
logging.basicConfig(level=logging.INFO)
from elfdd.pipeline import stages
run = stages.open_run(Path(sys.argv[2]))
if sys.argv[1] == "student":
    for cell in stages.grid(run.config):
        stages.stage_cell(run, cell)
else:
    getattr(stages, "stage_" + sys.argv[1])(run)
"""
PREREQUISITES = {
    "distill": [],
    "teacher": [],
    "extract": ["synthetic.pt", "checkpoints", "stages"],
    "student": ["synthetic.pt", "checkpoints", "stages", "store.zarr"],
}


def _run_all(run, config) -> None:
    stages.stage_distill(run)
    stages.stage_teacher(run)
    stages.stage_extract(run)
    for job in stages.grid(config):
        stages.stage_cell(run, job)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fashion_mnist_available):
    """An uninterrupted run of every stage."""
    config = load_config(None, RUN)
    run = stages.prepare_run(tmp_path_factory.mktemp("reference") / "run", config)
    try:
        _run_all(run, config)
    finally:
        torch.set_num_threads(2)
    return run, config


def _evidence(stage: str, run: stages.Run, config) -> bool:
    """The killed run has finished some work the resumed one must keep."""
    if stage == "distill":
        return run.dir.resume_point("distill").exists()
    if stage == "teacher":
        return run.dir.resume_point(f"teacher-{config.teacher.id}").exists()
    if stage == "extract":
        first = run.dir.store / "teachers" / config.teacher.id / "epoch_0000" / "logits" / "zarr.json"
        return first.exists() and '"complete": true' in first.read_text()
    return any(run.dir.students.glob("*.json")) if run.dir.students.exists() else False


def _kill_midway(stage: str, run: stages.Run, config) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, stage, str(run.dir.root)], env=os.environ.copy())
    deadline = time.monotonic() + 300
    while not _evidence(stage, run, config):
        assert child.poll() is None, (
            f"the {stage} child ended (exit {child.returncode}) before it could be killed"
        )
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()


def _outputs(stage: str, run: stages.Run, config):
    if stage == "distill":
        return torch.load(run.dir.synthetic, weights_only=True)["images"].numpy().tobytes()
    if stage == "teacher":
        manifest = json.loads((run.dir.teacher_dir(config.teacher.id) / "manifest.json").read_text())
        return [(c["epoch"], c["sha256"]) for c in manifest["checkpoints"]], manifest["complete"]
    if stage == "extract":
        store = FeatureStore(run.dir.store)
        return {
            (epoch, layer): content_sha256(store.features(config.teacher.id, epoch, layer)[:])
            for epoch in config.extract_epochs
            for layer in config.extract_layers
        }
    return {p.name: json.loads(p.read_text())["test_acc"] for p in sorted(run.dir.students.glob("*.json"))}


def _kept(stage: str, run: stages.Run, config) -> dict[Path, int]:
    """Files the killed run finished, with their mtimes: the resumed run must not rewrite them."""
    if stage == "teacher":
        files = sorted(run.dir.teacher_dir(config.teacher.id).glob("epoch_*.pt"))
    elif stage == "extract":
        files = sorted((run.dir.store / "teachers" / config.teacher.id / "epoch_0000").rglob("c/*"))
    elif stage == "student":
        files = sorted(run.dir.students.glob("*.json"))
    else:
        files = []
    return {f: f.stat().st_mtime_ns for f in files}


@pytest.mark.parametrize("stage", ["distill", "teacher", "extract", "student"])
def test_sigkill_then_rerun_gives_the_uninterrupted_outputs(stage, reference, tmp_path):
    ref_run, config = reference
    run = stages.prepare_run(tmp_path / "run", config)
    _copy(ref_run, run, PREREQUISITES[stage])
    if stage == "extract":
        (run.dir.stage_marker("extract")).unlink()
    _kill_midway(stage, run, config)
    kept = _kept(stage, run, config)
    if stage in ("teacher", "extract", "student"):
        assert kept, "the killed run finished nothing to keep"
    rerun = subprocess.run(
        [sys.executable, "-c", CHILD, stage, str(run.dir.root)], check=True, capture_output=True, text=True
    )
    if stage in ("distill", "teacher"):  # continued from the resume point, not started over
        assert "resuming from" in rerun.stderr, rerun.stderr[-2000:]
    assert _outputs(stage, run, config) == _outputs(stage, ref_run, config)
    assert {f: f.stat().st_mtime_ns for f in kept} == kept
    assert not run.dir.resume_point("distill").exists() and not list(run.dir.root.rglob("*.tmp"))


def _copy(source: stages.Run, run: stages.Run, names: list[str]) -> None:
    for name in names:
        path = source.dir.root / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, run.dir.root / name)


def test_partial_epoch_continues_after_its_last_chunk(reference, tmp_path, monkeypatch):
    """A writer dying after two blocks of an epoch: the re-run writes only the blocks after them, and the store
    equals one written in one go."""
    from elfdd.store import writer

    monkeypatch.setattr(writer, "CHUNK_BYTES", 8 << 10)  # one synthetic image per chunk here
    ref_run, config = reference
    run, fresh = (stages.prepare_run(tmp_path / name, config) for name in ("run", "fresh"))
    for target in (run, fresh):
        _copy(ref_run, target, ["synthetic.pt", "checkpoints"])
    real_write = writer.EpochWriter.write
    starts: list[tuple[int, int]] = []
    die_after = [2]

    def write(self, start, features, logits):
        if len(starts) == die_after[0]:
            raise KeyboardInterrupt  # the process dies between two blocks
        real_write(self, start, features, logits)
        starts.append((self.epoch, start))

    monkeypatch.setattr(writer.EpochWriter, "write", write)
    with pytest.raises(KeyboardInterrupt):
        stages.stage_extract(run)
    assert starts == [(0, 0), (0, 1)]
    starts.clear()
    die_after[0] = -1
    stages.stage_extract(run)
    assert starts[0] == (0, 2) and (0, 0) not in starts and (0, 1) not in starts
    stages.stage_extract(fresh)
    assert _outputs("extract", run, config) == _outputs("extract", fresh, config)


def _killed_recording(toy_npz, tmp_path, monkeypatch, experts: int, epochs: int, call: int):
    """Record ``experts`` experts of ``epochs`` epochs into ``tmp_path/killed``, killed (KeyboardInterrupt) at the
    ``call``-th training epoch; returns (record(out) -> manifest with the real training, the epoch-call counter)."""
    from elfdd.pipeline.data import load_data
    from elfdd.pipeline.teachers import experts as experts_module

    overrides = ["data.name=npz", f"data.path={toy_npz}", "distill.mtt.expert_batch=16"]
    config = load_config(
        None, [*overrides, f"distill.mtt.experts={experts}", f"distill.mtt.expert_epochs={epochs}"]
    )
    data, cpu = load_data(config.data), torch.device("cpu")
    real_epoch, calls = experts_module.train_epoch, []

    def train_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    def record(out):
        return experts_module.record_experts(data, config.distill, out, cpu, "fp32", seed=0)

    monkeypatch.setattr(experts_module, "train_epoch", train_epoch)
    with pytest.raises(KeyboardInterrupt):
        record(tmp_path / "killed")
    calls.clear()
    monkeypatch.setattr(experts_module, "train_epoch", lambda *a, **k: calls.append(1) or real_epoch(*a, **k))
    return record, calls


def test_killed_expert_recording_keeps_the_finished_experts(toy_npz, tmp_path, monkeypatch):
    """MTT's experts: dying inside the third expert keeps the first two (files untouched); the re-run records the
    rest, and the trajectories equal a recording in one go."""
    record, _ = _killed_recording(toy_npz, tmp_path, monkeypatch, experts=3, epochs=2, call=5)
    killed = tmp_path / "killed"
    kept = {p: p.stat().st_mtime_ns for p in sorted(killed.glob("trajectory_*.pt"))}
    assert len(kept) == 2
    # the finished experts are resumed from a small point of their own (kept in git by bench/sets across sessions)
    assert (killed / "finished.pt").exists() and not (killed / "resume.pt").exists()
    resumed, whole = record(killed), record(tmp_path / "whole")
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert [t["sha256"] for t in resumed["trajectories"]] == [t["sha256"] for t in whole["trajectories"]]
    assert resumed["complete"] and not list(killed.glob("*.pt.tmp")) and not list(killed.glob("[fr]*.pt"))


def test_killed_expert_recording_continues_inside_the_expert_it_was_in(toy_npz, tmp_path, monkeypatch):
    """Dying in the third epoch of the first expert: the re-run trains only the epochs left (the resume point holds
    the expert's weights, optimiser, data-order generator and snapshots) and the trajectory equals one recorded in
    one go."""
    record, calls = _killed_recording(toy_npz, tmp_path, monkeypatch, experts=1, epochs=4, call=3)
    killed = tmp_path / "killed"
    assert (killed / "resume.pt").exists() and not list(killed.glob("trajectory_*.pt"))
    resumed = record(killed)
    assert len(calls) == 2  # epochs 3 and 4 only
    whole = record(tmp_path / "whole")
    assert [t["sha256"] for t in resumed["trajectories"]] == [t["sha256"] for t in whole["trajectories"]]


def test_a_resumed_stage_counts_the_seconds_of_every_invocation(tmp_path):
    """A resume point keeps the work's running time: the next invocation starts from the earlier ones' seconds (to
    their last resume point), so a distillation resumed across sessions records what it took in all."""
    from elfdd.pipeline.resume import ResumePoint

    first = ResumePoint(tmp_path / "distill.pt", "key")
    time.sleep(0.2)
    first.save(10, {"x": torch.zeros(1)})
    second = ResumePoint(tmp_path / "distill.pt", "key")
    assert second.seconds() < 0.1  # nothing known before the resume point is read
    assert second.load() is not None
    assert second.earlier >= 0.2 and second.seconds() >= 0.2
    other = ResumePoint(tmp_path / "distill.pt", "another key")
    assert other.load() is None and other.earlier == 0.0  # other inputs: their time is not this work's
