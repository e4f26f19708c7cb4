"""MNIST and CIFAR-10/100 through torchvision with ``download=False`` from a user-given root."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import BadInput


def _cifar_classes():
    from torchvision import datasets

    class _Cifar10(datasets.CIFAR10):
        # torchvision checks md5 sums of the official archives; a user's (or a test's) smaller copy in the same
        # on-disk format is accepted as long as every file is present.
        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            import pickle

            path = Path(self.root) / self.base_folder / self.meta["filename"]
            if not path.is_file():
                raise RuntimeError(f"metadata file {path} not found")
            with open(path, "rb") as handle:
                self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    class _Cifar100(_Cifar10, datasets.CIFAR100):
        base_folder = datasets.CIFAR100.base_folder
        train_list = datasets.CIFAR100.train_list
        test_list = datasets.CIFAR100.test_list
        meta = datasets.CIFAR100.meta

    return {"cifar10": _Cifar10, "cifar100": _Cifar100}


def load(name: str, root: Path) -> dict[str, np.ndarray]:
    from torchvision import datasets

    builders = {"mnist": datasets.MNIST, **_cifar_classes()}
    try:
        train = builders[name](str(root), train=True, download=False)
        test = builders[name](str(root), train=False, download=False)
    except (RuntimeError, OSError, ValueError, EOFError, KeyError) as exc:
        raise BadInput(
            f"cannot read {name} under {root} (torchvision layout, download=False): {exc}"
        ) from None
    return {
        "x_train": np.asarray(train.data),
        "y_train": np.asarray(train.targets),
        "x_test": np.asarray(test.data),
        "y_test": np.asarray(test.targets),
    }
