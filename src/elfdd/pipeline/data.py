"""Datasets as normalised in-memory tensors: Fashion-MNIST from IDX files, a user's .npz, torchvision sets."""

from __future__ import annotations

import functools
import gzip
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.errors import BadInput
from ..core.registry import Registry
from .zca import ZCA

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from .config import DataConfig

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_MAGIC = {3: 2051, 1: 2049}  # images (3 dims), labels (1 dim)


@dataclass
class DataSplits:
    """Normalised train/test tensors (N, C, H, W float32; N int64) and the statistics used."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: list[float]
    std: list[float]
    zca: ZCA | None = None  # fitted on the training split (after the subset) when data.zca is on

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def normalization(self) -> dict[str, Any]:
        """The input space of every tensor derived from this data (recorded in synthetic sets and stores)."""
        out: dict[str, Any] = {"mean": self.mean, "std": self.std}
        if self.zca is not None:
            out["zca_sha256"] = self.zca.sha256
        return out


def read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file, checking its magic number and length."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise BadInput(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 8:
        raise BadInput(f"IDX file {path} is too short")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if magic not in IDX_MAGIC.values() or IDX_MAGIC.get(ndim) != magic:
        raise BadInput(f"IDX file {path} has wrong magic number {magic:#010x}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = math.prod(dims)  # Python integers: a header whose dimensions overflow int64 is still refused
    if len(raw) - offset != expected:
        raise BadInput(
            f"IDX file {path} holds {len(raw) - offset} bytes of data, expected {expected} for shape {dims}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx_folder(root: str | None) -> Path:
    candidates = [Path(root)] if root else []
    if not root and os.environ.get("ELFDD_DATA"):
        candidates.append(Path(os.environ["ELFDD_DATA"]))
    if not root:
        candidates.append(DEBIAN_FASHION_MNIST)
    for base in candidates:
        for folder in (base, base / "FashionMNIST" / "raw", base / "fashion-mnist"):
            if all(_idx_file(folder, stem) for stem in IDX_FILES.values()):
                return folder
    searched = ", ".join(str(c) for c in candidates)
    raise BadInput(
        f"Fashion-MNIST IDX files not found in {searched}; install them with "
        "'apt-get install dataset-fashion-mnist' or point data.root / ELFDD_DATA at a folder holding them"
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_path(folder: Path, key: str) -> Path:
    path = _idx_file(folder, IDX_FILES[key])
    assert path is not None  # _find_idx_folder found every file
    return path


def _load_fashion_mnist(cfg: DataConfig) -> dict[str, np.ndarray]:
    folder = _find_idx_folder(cfg.root)
    return {key: read_idx(_idx_path(folder, key)) for key in IDX_FILES}


def _load_npz(cfg: DataConfig) -> dict[str, np.ndarray]:
    path = Path(cfg.path)  # type: ignore[arg-type]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_FILES if k not in npz.files]
            if missing:
                raise BadInput(
                    f"{path} lacks arrays {missing}; it must hold x_train, y_train, x_test, y_test"
                )
            return {k: npz[k] for k in IDX_FILES}
    except FileNotFoundError:
        raise BadInput(f"data file not found: {path}") from None
    except (ValueError, OSError) as exc:
        raise BadInput(f"cannot read {path} as .npz: {exc}") from None


def _load_torchvision(cfg: DataConfig) -> dict[str, np.ndarray]:
    from . import tv_datasets

    if not cfg.root:
        raise BadInput(f"data.root is required for {cfg.name} (torchvision layout, nothing is downloaded)")
    return tv_datasets.load(cfg.name, Path(cfg.root))


def _to_images(x: np.ndarray, where: str) -> torch.Tensor:
    """(N,H,W) or (N,H,W,C), uint8 or float in [0, 1] -> float32 (N,C,H,W) in [0, 1]."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise BadInput(f"{where} must have shape (N,H,W) or (N,H,W,C), got {x.shape}")
    if 0 in x.shape:
        raise BadInput(f"{where} holds no images (shape {x.shape})")
    if x.dtype == np.uint8:
        images = torch.from_numpy(np.array(x, copy=True)).float().div_(255.0)
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise BadInput(f"{where} holds NaN or Inf pixels")
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        raise BadInput(f"{where} must be uint8 or float, got {x.dtype}")
    return images.permute(0, 3, 1, 2).contiguous()


def _to_labels(y: np.ndarray, n: int, where: str) -> torch.Tensor:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise BadInput(f"{where} has {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise BadInput(f"{where} must hold non-negative integer class labels")
    return torch.from_numpy(y.astype(np.int64))


def class_count(y_train: torch.Tensor, y_test: torch.Tensor, where: str) -> int:
    """The number of classes, 0 .. the largest label, each with at least one training image (a stray label such as a
    57 among ten classes is refused here, not found hours later), and at least two of them (with one class a
    student reaches 100 % by always answering it)."""
    largest = int(max(y_train.max(), y_test.max()))
    if largest < 1:
        raise BadInput(
            f"{where}: every label is {largest}; a classification data set needs at least two classes"
        )
    missing = sorted(set(range(largest + 1)) - set(y_train.unique().tolist()))
    if missing:
        raise BadInput(
            f"{where}: labels go up to {largest}, but classes {_few(missing)} have no training image; "
            "labels must be 0 .. K-1 with every class present"
        )
    return largest + 1


def _few(values: list[int]) -> str:
    return (
        str(values)
        if len(values) <= 8
        else f"[{', '.join(map(str, values[:8]))}, ... ({len(values)} in all)]"
    )


def _every_class_kept(labels: torch.Tensor, count: int, where: str) -> None:
    missing = sorted(set(range(count)) - set(labels.unique().tolist()))
    if missing:
        raise BadInput(f"{where} leaves classes {_few(missing)} without a training image")


def _subset(
    x: torch.Tensor, y: torch.Tensor, size: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if size is None or size >= len(y):
        return x, y
    index = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size]
    return x[index], y[index]


Loader = Callable[["DataConfig"], dict[str, np.ndarray]]
DATASETS: Registry[Loader] = Registry("dataset")


@dataclass(frozen=True)
class DataShape:
    """What a model is built for: one image's shape (C, H, W) and the number of classes."""

    image_shape: tuple[int, int, int]
    num_classes: int


Shaper = Callable[["DataConfig"], DataShape]
SHAPES: dict[str, Shaper] = {}


def register_dataset(name: str, loader: Loader, shape: Shaper | None = None) -> None:
    """Register ``loader(data_config) -> {x_train, y_train, x_test, y_test}`` (uint8 or [0, 1] float images (N,H,W)
    or (N,H,W,C), integer labels 0 .. K-1, each class with training images) as ``data.name`` value ``name``;
    ``shape(data_config)``, where given, tells the :class:`DataShape` without loading the images (else
    :func:`data_shape` loads them)."""
    DATASETS.register(name, loader)
    if shape is not None:
        SHAPES[name] = shape


def data_shape(cfg: DataConfig) -> DataShape:
    """The image shape and class count of the configured data: from the files' headers and labels where the dataset
    declares how (Fashion-MNIST, .npz, torchvision's sets), else from the loaded data."""
    if cfg.name in SHAPES:
        return SHAPES[cfg.name](cfg)
    data = load_data(cfg)
    return DataShape(data.image_shape, data.num_classes)


def _image_shape(dims: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """(N,H,W) or (N,H,W,C) -> (C, H, W)."""
    if len(dims) not in (3, 4):
        raise BadInput(f"{where} must have shape (N,H,W) or (N,H,W,C), got {dims}")
    return (dims[3] if len(dims) == 4 else 1, dims[1], dims[2])


def _labels_shape(x_dims: tuple[int, ...], y_train: np.ndarray, y_test: np.ndarray, where: str) -> DataShape:
    train, test = (torch.from_numpy(np.asarray(y).reshape(-1).astype(np.int64)) for y in (y_train, y_test))
    return DataShape(_image_shape(x_dims, f"{where}: x_train"), class_count(train, test, where))


def _fashion_mnist_shape(cfg: DataConfig) -> DataShape:
    folder = _find_idx_folder(cfg.root)
    path = _idx_path(folder, "x_train")
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            header = bytes(handle.read(16))
    except (OSError, EOFError) as exc:
        raise BadInput(f"cannot read IDX file {path}: {exc}") from None
    if len(header) < 16:
        raise BadInput(f"IDX file {path} is too short")
    dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    y_train, y_test = (read_idx(_idx_path(folder, key)) for key in ("y_train", "y_test"))
    return _labels_shape(dims, y_train, y_test, str(folder))


def _npz_shape(cfg: DataConfig) -> DataShape:
    path = Path(cfg.path)  # type: ignore[arg-type]
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not {"x_train", "y_train", "y_test"} <= set(npz.files):
                return _npz_loaded_shape(cfg)  # the loader names what is missing
            with npz.zip.open("x_train.npy") as member:
                version = np.lib.format.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    return _npz_loaded_shape(cfg)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }[version]
                dims = read_header(member)[0]
            return _labels_shape(tuple(dims), npz["y_train"], npz["y_test"], str(path))
    except FileNotFoundError:
        raise BadInput(f"data file not found: {path}") from None
    except (ValueError, OSError, KeyError) as exc:
        raise BadInput(f"cannot read {path} as .npz: {exc}") from None


def _declared_shape(shape: DataShape, cfg: DataConfig) -> DataShape:
    return shape


def _npz_loaded_shape(cfg: DataConfig) -> DataShape:
    data = load_data(cfg)
    return DataShape(data.image_shape, data.num_classes)


def list_datasets() -> list[str]:
    return DATASETS.names()


register_dataset("fashion_mnist", _load_fashion_mnist, _fashion_mnist_shape)
register_dataset("npz", _load_npz, _npz_shape)
# torchvision's on-disk layout under data.root; their shapes are the datasets' own
for _name, _shape in {
    "mnist": DataShape((1, 28, 28), 10),
    "cifar10": DataShape((3, 32, 32), 10),
    "cifar100": DataShape((3, 32, 32), 100),
}.items():
    register_dataset(_name, _load_torchvision, functools.partial(_declared_shape, _shape))


def load_data(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """Load, check and normalise a dataset; statistics come from the (full) training split."""
    arrays = DATASETS[cfg.name](cfg)
    where = cfg.path or cfg.root or cfg.name
    x_train = _to_images(arrays["x_train"], f"{where}: x_train")
    x_test = _to_images(arrays["x_test"], f"{where}: x_test")
    y_train = _to_labels(arrays["y_train"], len(x_train), f"{where}: y_train")
    y_test = _to_labels(arrays["y_test"], len(x_test), f"{where}: y_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise BadInput(
            f"{where}: train images {tuple(x_train.shape[1:])} and test images {tuple(x_test.shape[1:])} differ in shape"
        )
    if x_train.shape[-1] != x_train.shape[-2]:
        raise BadInput(f"{where}: images must be square, got {tuple(x_train.shape[-2:])}")
    mean = x_train.mean(dim=(0, 2, 3))
    std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-6)
    num_classes = class_count(y_train, y_test, where)
    x_train, y_train = _subset(x_train, y_train, cfg.train_subset, seed)
    x_test, y_test = _subset(x_test, y_test, cfg.test_subset, seed)
    _every_class_kept(y_train, num_classes, f"{where}: data.train_subset {cfg.train_subset}")
    shift, scale = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    x_train, x_test = (x_train - shift) / scale, (x_test - shift) / scale
    zca = None
    if cfg.zca:
        zca = ZCA.fit(x_train, cfg.zca_eps)
        x_train, x_test = zca(x_train), zca(x_test)
    return DataSplits(
        name=cfg.name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        mean=[round(float(v), 6) for v in mean],
        std=[round(float(v), 6) for v in std],
        zca=zca,
    )
