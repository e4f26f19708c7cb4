"""Where each stage's time goes: the share of its wall time spent inside the model's own ATen operators.

    python bench/profile_stages.py [--threads 2]

Runs each stage of the default config on reduced work under torch.profiler (distillation: 5 DM iterations;
teacher: 1 epoch on 1,024 images; extraction: the 10 x 8 default store; one ELF student per architecture, 5 epochs)
and prints per stage: wall seconds, the share of wall time inside top-level ATen operators, split into the model's
layers (convolution, normalisation, pooling, activation, linear and their backward passes) and other ATen work
(optimizer, augmentation, copies, losses); the rest is Python, I/O and waiting. Lines `share STAGE model=.. other=..
rest=..`. The profiler's own bookkeeping inflates `rest` a little.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import load_data
from elfdd.pipeline.distill import distill
from elfdd.pipeline.extract import TeacherSource, extract_to_store
from elfdd.pipeline.students import Cell, StudentContext, train_cell
from elfdd.pipeline.teachers import load_manifest, train_teacher
from elfdd.pipeline.training import configure_threads
from elfdd.store.reader import FeatureDataset

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
# Operators that are the network's layers (forward and backward), by name fragment.
MODEL_OPS = (
    "conv",
    "norm",
    "pool",
    "relu",
    "threshold",
    "clamp_min",
    "linear",
    "addmm",
    "::mm",
    "matmul",
    "dropout",
    "hardtanh",
)


def top_level_aten(prof) -> dict[str, float]:
    """Seconds per ATen operator called from Python (not from inside another ATen operator)."""
    totals: dict[str, float] = {}
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            totals[event.name] = totals.get(event.name, 0.0) + event.cpu_time_total / 1e6
    return totals


def profiled(stage: str, work: Callable[[], object]) -> None:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        work()
        wall = time.perf_counter() - started
    ops = top_level_aten(prof)
    model = sum(t for name, t in ops.items() if any(k in name for k in MODEL_OPS))
    other = sum(ops.values()) - model
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:4]
    print(
        f"{stage:18s} wall {wall:6.2f} s; top ops: "
        + ", ".join(f"{name[6:]} {100 * t / wall:.0f}%" for name, t in top)
    )
    print(
        f"share {stage} model={model / wall:.2f} other_aten={other / wall:.2f} rest={1 - (model + other) / wall:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d')} {args.threads} threads torch {torch.__version__}")
    config = load_config(
        ROOT / "src" / "elfdd" / "configs" / "default.yaml",
        [
            "precision=fp32",
            "distill.iterations=5",
            "teacher.train_subset=1024",
            "teacher.epochs=1",
            "teacher.checkpoint_epochs=[1]",
            "extract.teacher_epochs=[1]",
        ],
    )
    data = load_data(config.data, config.seed)
    work = Path(tempfile.mkdtemp(prefix="elfdd-profile-"))
    try:
        synthetic: list = []
        profiled("distill", lambda: synthetic.extend(distill(data, config.distill, CPU, "fp32", 0)[:1]))
        teacher_dir = work / "teacher"
        profiled("teacher", lambda: train_teacher(data, config.teacher, teacher_dir, CPU, "fp32", 0))
        store = work / "store.zarr"
        manifest = load_manifest(teacher_dir)
        layers = ["block3"]
        profiled(
            "extract",
            lambda: extract_to_store(
                synthetic[0],
                [TeacherSource(config.teacher, manifest, teacher_dir, [1], layers)],
                store,
                config.extract,
                CPU,
            ),
        )
        dataset = FeatureDataset(store, config.teacher.id, 1, "block3")
        students = config.students.model_copy(update={"epochs": 5})
        for arch in config.students.archs:
            job = Cell(arch, "front_rear_task", 0, "clean", "ce", 1.0, 1.0, 1, "block3")
            profiled(
                f"student {arch}",
                lambda job=job: train_cell(
                    job,
                    dataset,
                    StudentContext(data.x_test, data.y_test, students, data.num_classes, CPU, "fp32"),
                ),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
