"""Datasets: IDX files, the user's .npz, torchvision MNIST/CIFAR from tiny files in the real on-disk format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import class_images, write_idx

from elfdd.core.errors import BadInput
from elfdd.pipeline.config import DataConfig
from elfdd.pipeline.data import load_data, read_idx


def _idx_folder(folder, gz=True):
    x_train, y_train = class_images(30, 28, 3, seed=0)
    x_test, y_test = class_images(12, 28, 3, seed=1)
    for stem, array in [
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte", x_test),
        ("t10k-labels-idx1-ubyte", y_test),
    ]:
        write_idx(folder / stem, array, gz=gz)
    return x_train, y_train


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashion_mnist_idx_from_a_root(tmp_path, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "FashionMNIST" / "raw"
    x_train, y_train = _idx_folder(folder, gz=layout == "flat")
    data = load_data(DataConfig(root=str(tmp_path)))
    assert data.x_train.shape == (30, 1, 28, 28) and data.num_classes == 3
    assert data.y_train.tolist() == y_train.tolist()
    expected_mean = x_train.astype(np.float64).mean() / 255
    assert data.mean[0] == pytest.approx(expected_mean, abs=1e-5)
    assert float(data.x_train.mean()) == pytest.approx(0.0, abs=1e-5)


def test_elfdd_data_environment_variable(tmp_path, monkeypatch):
    _idx_folder(tmp_path)
    monkeypatch.setenv("ELFDD_DATA", str(tmp_path))
    assert load_data(DataConfig()).x_train.shape[0] == 30


def test_train_subset(tmp_path):
    _idx_folder(tmp_path)
    data = load_data(DataConfig(root=str(tmp_path), train_subset=10, test_subset=5))
    assert len(data.y_train) == 10 and len(data.y_test) == 5


def test_wrong_idx_magic_is_refused(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(b"\x00\x00\x09\x99" + b"\x00" * 20)
    with pytest.raises(BadInput, match="wrong magic"):
        read_idx(path)


def test_truncated_idx_is_refused(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BadInput, match="expected"):
        read_idx(path)


def test_missing_fashion_mnist_names_the_fix(tmp_path):
    with pytest.raises(BadInput, match="apt-get install dataset-fashion-mnist"):
        load_data(DataConfig(root=str(tmp_path)))


@pytest.mark.parametrize("channels", [0, 3])
@pytest.mark.parametrize("as_float", [False, True])
def test_npz_shapes_and_dtypes(tmp_path, channels, as_float):
    x, y = class_images(20, 28, 4, seed=0, channels=channels)
    if as_float:
        x = x.astype(np.float32) / 255
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    data = load_data(DataConfig(name="npz", path=str(path)))
    assert data.x_train.shape == (20, max(1, channels), 28, 28)
    assert len(data.mean) == max(1, channels)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4)}, "lacks arrays"),
        (
            {
                "x_train": np.zeros((4, 8, 8), np.uint8),
                "y_train": np.zeros(3, np.int64),
                "x_test": np.zeros((2, 8, 8), np.uint8),
                "y_test": np.zeros(2, np.int64),
            },
            "3 labels for 4 images",
        ),
        (
            {
                "x_train": np.full((4, 8, 8), np.nan, np.float32),
                "y_train": np.zeros(4, np.int64),
                "x_test": np.zeros((2, 8, 8), np.float32),
                "y_test": np.zeros(2, np.int64),
            },
            "NaN",
        ),
    ],
)
def test_malformed_npz_is_refused(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(BadInput, match=message):
        load_data(DataConfig(name="npz", path=str(path)))


def test_mnist_through_torchvision(tmp_path):
    _idx_folder(tmp_path / "MNIST" / "raw", gz=False)
    data = load_data(DataConfig(name="mnist", root=str(tmp_path)))
    assert data.x_train.shape == (30, 1, 28, 28) and data.num_classes == 3


@pytest.mark.parametrize(
    "name,folder,label_key,meta",
    [
        ("cifar10", "cifar-10-batches-py", "labels", ("batches.meta", "label_names")),
        ("cifar100", "cifar-100-python", "fine_labels", ("meta", "fine_label_names")),
    ],
)
def test_cifar_through_torchvision(tmp_path, name, folder, label_key, meta):
    base = tmp_path / folder
    base.mkdir()
    rng = np.random.default_rng(0)
    files = (
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
        if name == "cifar10"
        else ["train", "test"]
    )
    for fname in files:
        blob = {
            "data": rng.integers(0, 255, (6, 3072), dtype=np.uint8),
            label_key: [int(c) for c in rng.permutation(np.arange(6) % 5)],  # every class present
        }
        (base / fname).write_bytes(pickle.dumps(blob))
    (base / meta[0]).write_bytes(pickle.dumps({meta[1]: [f"c{i}" for i in range(5)]}))
    data = load_data(DataConfig(name=name, root=str(tmp_path)))
    train_batches = len(files) - 1
    assert data.x_train.shape == (6 * train_batches, 3, 32, 32)
    assert len(data.mean) == 3


def test_torchvision_sets_need_a_root():
    with pytest.raises(BadInput, match="data.root is required"):
        load_data(DataConfig(name="cifar10"))
