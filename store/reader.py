"""Reading the store: metadata, arrays that are known complete, and a torch Dataset of (image, feature, label)."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from ..pipeline.errors import BadInput
from .layout import REQUIRED_ATTRS, SCHEMA, epoch_group, epoch_path, feature_path, logits_path, teacher_path


class FeatureStore:
    """Read access to a store; every array handed out has its ``complete`` marker."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise BadInput(f"feature store not found: {self.path}")
        try:
            self.root = zarr.open_group(str(self.path), mode="r")
        except Exception as exc:
            raise BadInput(f"{self.path} is not a Zarr group: {str(exc).splitlines()[0]}") from None
        meta = self.root.attrs.get("elfdd")
        if not isinstance(meta, dict):
            raise BadInput(f"{self.path} is not an elfdd feature store (no 'elfdd' attributes)")
        if meta.get("schema") != SCHEMA:
            raise BadInput(
                f"store {self.path} has schema {meta.get('schema')!r}; this elfdd reads schema {SCHEMA}"
            )
        missing = [k for k in REQUIRED_ATTRS if k not in meta]
        if missing:
            raise BadInput(f"store {self.path} attributes lack {missing}")
        self.meta: dict[str, Any] = meta

    def _node(self, path: str, kind: type) -> Any:
        try:
            node = self.root[path]
        except KeyError:
            raise BadInput(f"store {self.path} has no {kind.__name__.lower()} {path}") from None
        if not isinstance(node, kind):
            raise BadInput(f"store {self.path}: {path} is not a {kind.__name__.lower()}")
        return node

    def _group(self, path: str) -> zarr.Group:
        return self._node(path, zarr.Group)

    def array(self, path: str) -> zarr.Array:
        node = self._node(path, zarr.Array)
        if node.attrs.get("complete") is not True:
            raise BadInput(f"store {self.path}: array {path} is incomplete (its writer did not finish)")
        return node

    def teachers(self) -> list[str]:
        if "teachers" not in self.root:
            return []
        return sorted(name for name, _ in self._group("teachers").groups())

    def teacher_attrs(self, teacher_id: str) -> dict[str, Any]:
        return dict(self._group(teacher_path(teacher_id)).attrs)

    def epochs(self, teacher_id: str) -> list[int]:
        group = self._group(teacher_path(teacher_id))
        return sorted(int(name.split("_")[1]) for name, _ in group.groups() if name.startswith("epoch_"))

    def layers(self, teacher_id: str, epoch: int) -> list[str]:
        group = self._group(epoch_path(teacher_id, epoch))
        return sorted(name for name, _ in group.arrays() if name != "logits")

    def checkpoint_sha256(self, teacher_id: str, epoch: int) -> str:
        return self._group(epoch_path(teacher_id, epoch)).attrs["checkpoint_sha256"]

    def features(self, teacher_id: str, epoch: int, layer: str) -> zarr.Array:
        if epoch not in self.epochs(teacher_id):
            raise BadInput(
                f"store {self.path} has no features of teacher {teacher_id} at {epoch_group(epoch)} (has {self.epochs(teacher_id)})"
            )
        if layer not in self.layers(teacher_id, epoch):
            raise BadInput(
                f"store {self.path} has no layer {layer!r} at teacher {teacher_id} epoch {epoch} (has {self.layers(teacher_id, epoch)})"
            )
        return self.array(feature_path(teacher_id, epoch, layer))

    def logits(self, teacher_id: str, epoch: int) -> zarr.Array:
        return self.array(logits_path(teacher_id, epoch))

    def synthetic(self) -> tuple[np.ndarray, np.ndarray]:
        return self.array("synthetic/images")[...], self.array("synthetic/labels")[...]


class FeatureDataset(torch.utils.data.Dataset):
    """(image, feature[V, ...], label) triples streamed from the store by whole chunks.

    The store is opened lazily in the process that reads (so DataLoader workers each open their own), and
    decoded chunks are kept in a small LRU cache bounded in bytes, so stores larger than memory stream.
    """

    def __init__(
        self, path: str | Path, teacher_id: str, epoch: int, layer: str, cache_bytes: int = 256 << 20
    ):
        self.path, self.teacher_id, self.epoch, self.layer = Path(path), teacher_id, epoch, layer
        self.cache_bytes = cache_bytes
        store = FeatureStore(path)
        features = store.features(teacher_id, epoch, layer)
        self.length = features.shape[0]
        self.feature_shape = tuple(features.shape[2:])
        self.views = features.shape[1]
        self.chunk = features.chunks[0]
        self._pid: int | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pid=None, _arrays={}, _cache=OrderedDict())
        return state

    def __len__(self) -> int:
        return self.length

    def _open(self) -> None:
        if self._pid != os.getpid():
            store = FeatureStore(self.path)
            self._arrays = {
                "images": store.array("synthetic/images"),
                "labels": store.array("synthetic/labels"),
                "features": store.features(self.teacher_id, self.epoch, self.layer),
            }
            self._cache.clear()
            self._pid = os.getpid()

    def _chunk(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        self._open()
        part = slice(index * self.chunk, min(self.length, (index + 1) * self.chunk))
        try:
            chunk = (
                self._arrays["images"][part],
                self._arrays["features"][part],
                self._arrays["labels"][part],
            )
        except Exception as exc:
            raise BadInput(
                f"store {self.path}: cannot read samples {part.start}:{part.stop}: {str(exc).splitlines()[0]}"
            ) from None
        self._cache[index] = chunk
        while (
            len(self._cache) > 1
            and sum(sum(a.nbytes for a in c) for c in self._cache.values()) > self.cache_bytes
        ):
            self._cache.popitem(last=False)
        return chunk

    def get_batch(self, indices: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B,C,H,W) float32, features (B,V,...) float32 and labels (B,) int64 for the given samples."""
        indices = np.asarray(indices)
        images, features, labels = [], [], []
        for position in indices:
            chunk = self._chunk(int(position) // self.chunk)
            offset = int(position) % self.chunk
            images.append(chunk[0][offset])
            features.append(chunk[1][offset])
            labels.append(chunk[2][offset])
        return (
            torch.from_numpy(np.stack(images)),
            torch.from_numpy(np.stack(features).astype(np.float32)),
            torch.from_numpy(np.stack(labels)),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, features, labels = self.get_batch([index])
        return images[0], features[0], labels[0]
