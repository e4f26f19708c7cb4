"""Shared fixtures: quiet offline Prefect in a temporary home, tiny datasets written in real on-disk formats."""

from __future__ import annotations

import os
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

from helpers import class_images  # noqa: E402


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
