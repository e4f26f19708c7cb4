"""Helpers the tests share: tiny datasets written in real on-disk formats."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# A whole run on the toy data in seconds: DM 4 iterations, a teacher checkpointed at epochs 0 and 2, 2-epoch students.
TINY_RUN = [
    "precision=fp32",
    "distill.ipc=2",
    "distill.iterations=4",
    "distill.batch_real=8",
    "teacher.epochs=2",
    "teacher.checkpoint_epochs=[0,2]",
    "teacher.batch_size=32",
    "students.epochs=2",
    "students.seeds=[0]",
]


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, the format of (Fashion-)MNIST."""
    magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def class_images(
    n: int, size: int, num_classes: int, seed: int, channels: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: each class is a bright square at its own place, plus noise (uint8)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    shape = (n, size, size) if not channels else (n, size, size, channels)
    images = rng.integers(0, 60, size=shape).astype(np.uint8)
    step = max(1, (size - 6) // num_classes)
    for i, label in enumerate(labels):
        start = label * step
        images[i, start : start + 6, start : start + 6] = 230
    return images, labels.astype(np.uint8)


def clean_store(
    path: Path, n: int = 12, feature_shape=(8, 4, 4), epochs=(1, 2), views: int = 1, dtype="float16"
):
    """A toy store written by elfdd's writer: (images, labels, {epoch: features (n, views, ...)})."""
    from elfdd.store import writer

    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 1, 28, 28)).astype(np.float32)
    labels = (np.arange(n) % 3).astype(np.int64)
    writer.create_store(path, images, labels, "toy", 3, {"mean": [0.5], "std": [0.2]}, "test")
    writer.write_teacher(path, "t1", {"arch": "convnet", "arch_kwargs": {}, "trained_on": {}, "seed": 0})
    if views > 1:
        params = rng.random((n, views, 17)).astype(np.float32)
        params[:, 0] = 0
        writer.write_views(path, "t1", params, {"seed": 0})
    features = {}
    for epoch in epochs:
        features[epoch] = np.maximum(rng.normal(size=(n, views, *feature_shape)), 0).astype(np.float32)
        logits = rng.normal(size=(n, views, 3)).astype(np.float32)
        policy = "replay" if views > 1 else "clean"
        writer.write_epoch_features(
            path, "t1", epoch, f"sha{epoch}", {"block3": features[epoch]}, logits, policy, dtype=dtype
        )
    return path, images, labels, features


def staged_run(toy_npz: Path, folder: Path, overrides: list[str]):
    """A run on the toy .npz data after distill, teacher and extract: (Run, RunConfig)."""
    from elfdd.pipeline import stages
    from elfdd.pipeline.config import load_config

    config = load_config(None, ["data.name=npz", f"data.path={toy_npz}", *overrides])
    run = stages.prepare_run(folder, config)
    stages.stage_distill(run)
    stages.stage_teacher(run)
    stages.stage_extract(run)
    return run, config


def reference_job(config, student: str, loss_mode: str, seed: int, view_policy: str | None = None):
    """The grid cell of ``student`` under ``loss_mode`` with every feature axis at its reference value (its paired
    teacher at that teacher's reference epoch and layer): the one cell a test trains."""
    from elfdd.pipeline.students import make_cell, reference_cell, student_plan

    ref = reference_cell(config)
    layer = config.student_layer
    pairing = student_plan(config, student).pairings[layer]
    teacher = config.teacher_config(pairing.teacher)
    return make_cell(
        student,
        loss_mode,
        seed,
        view_policy or ref["view_policy"],
        ref["feature_loss"],
        ref["lambda_front"],
        ref["lambda_rear"],
        config.student_epochs_of(teacher)[0],
        layer,
        teacher.id,
        pairing.split,
    )
