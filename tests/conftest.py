"""Shared fixtures: quiet offline Prefect in a temporary home, tiny datasets written in real on-disk formats."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

_HOME = tempfile.mkdtemp(prefix="elfdd-prefect-")
os.environ.setdefault("PREFECT_HOME", _HOME)
from elfdd.flows.settings import quiet_prefect_env  # noqa: E402

quiet_prefect_env(Path(_HOME))

import torch  # noqa: E402

torch.set_num_threads(2)

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


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory) -> Path:
    """A tiny 28x28 grey 4-class dataset as the user's own .npz."""
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    x_train, y_train = class_images(80, 28, 4, seed=0)
    x_test, y_test = class_images(40, 28, 4, seed=1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="session")
def fashion_mnist_available() -> bool:
    from elfdd.pipeline.data import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists() and not os.environ.get(
        "ELFDD_DATA"
    ):
        pytest.fail("Fashion-MNIST is not installed: run `make test` (it installs dataset-fashion-mnist)")
    return True
