"""Helpers the tests share: tiny datasets written in real on-disk formats."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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
