"""Reading the store: metadata, arrays that are known complete, and a torch Dataset of (image, feature, label)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from ..core.errors import BadInput, NumericalFault
from . import location
from .chunks import damaged_contents, missing_chunks
from .layout import (
    LABEL,
    REQUIRED_ATTRS,
    SCHEMA,
    epoch_group,
    epoch_path,
    feature_path,
    logits_path,
    teacher_path,
)


class FeatureStore:
    """Read access to a store; every array handed out has its ``complete`` marker."""

    def __init__(self, path: str | Path):
        self.path = location.normalize(path)
        if not location.exists(self.path):
            raise BadInput(f"feature store not found: {self.path}")
        try:
            self.root = zarr.open_group(self.path, mode="r", use_consolidated=False)
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
        return sorted(name for name, _ in group.arrays() if name not in ("logits", LABEL))

    def checkpoint_sha256(self, teacher_id: str, epoch: int) -> str:
        return str(self._group(epoch_path(teacher_id, epoch)).attrs["checkpoint_sha256"])

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

    def view_params(self, teacher_id: str) -> zarr.Array | None:
        """The (N, V, P) augmentation parameters of the stored views, or None for a clean (V=1) teacher."""
        group = self._group(teacher_path(teacher_id))
        return self.array(f"{teacher_path(teacher_id)}/views/params") if "views" in group else None

    def logits(self, teacher_id: str, epoch: int) -> zarr.Array:
        return self.array(logits_path(teacher_id, epoch))

    def synthetic_arrays(self) -> tuple[zarr.Array, zarr.Array]:
        return self.array("synthetic/images"), self.array("synthetic/labels")

    def synthetic(self) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.synthetic_arrays()
        return np.asarray(images[...]), np.asarray(labels[...])

    def refuse_damaged_chunks(self, *arrays: zarr.Array, contents: bool = True) -> None:
        """BadInput naming the first chunk of ``arrays`` that the store lacks (zarr would read it as the fill value),
        cannot decode, or that differs from the content recorded when it was written (a chunk swapped for another
        valid one): what ``elfdd verify`` checks, checked by every reader before it trusts the arrays. Each chunk is
        read and hashed once (docs/benchmarks.md, "Reader integrity check"); ``contents=False``: only missing
        chunks (a reader that decodes every chunk anyway and names a chunk that fails)."""
        for array in arrays:
            problems = missing_chunks(array)
            if not problems and contents:
                problems = damaged_contents(array)
            if problems:
                raise BadInput(
                    f"store {self.path}: {problems[0]}; run elfdd verify {self.path} (a run's own store is made "
                    "again by elfdd extract DIR --force)"
                )


# (images, features, labels, view params), and the logits of the same views when read ``with_logits``
Batch = tuple[torch.Tensor, ...]


class FeatureDataset(torch.utils.data.Dataset):
    """(image, feature of one view, label, that view's augmentation parameters[, the teacher's logits of that view])
    streamed from the store (the logits only when opened ``with_logits``).

    Reads whole chunks of samples (every view of them) and keeps decoded chunks in an LRU cache bounded in bytes,
    so stores larger than memory stream. The store is opened lazily in the process that reads, so DataLoader workers
    each open their own (zarr 3 + fork hazard). Indexing takes a sample or a (sample, view) pair;
    ``__getitems__`` fetches a whole batch in one call.
    """

    def __init__(
        self,
        path: str | Path,
        teacher_id: str,
        epoch: int,
        layer: str,
        cache_bytes: int = 256 << 20,
        with_logits: bool = False,
    ):
        self.path, self.teacher_id, self.epoch, self.layer = (
            location.normalize(path),
            teacher_id,
            epoch,
            layer,
        )
        self.cache_bytes, self.with_logits = cache_bytes, with_logits
        store = FeatureStore(path)
        features = store.features(teacher_id, epoch, layer)
        self.length = features.shape[0]
        self.views = features.shape[1]
        self.feature_shape = tuple(features.shape[2:])
        self.image_shape = tuple(store.meta["image_shape"])
        labels = store.synthetic_arrays()[1]  # (N,) int64, or soft (N, classes) float32
        self.label_shape, self.label_dtype = tuple(labels.shape[1:]), np.dtype(labels.dtype)
        self.view_policy = features.attrs.get("view_policy", "clean")
        params = store.view_params(teacher_id)
        if self.views > 1 and (params is None or params.shape[:2] != features.shape[:2]):
            raise BadInput(
                f"store {self.path}: {self.views} views of teacher {teacher_id} but no matching views/params"
            )
        self.num_params = params.shape[2] if params is not None else 0
        self.num_classes = store.logits(teacher_id, epoch).shape[2]
        store.refuse_damaged_chunks(
            features,
            store.logits(teacher_id, epoch),
            *store.synthetic_arrays(),
            *([] if params is None else [params]),
        )
        self.chunk = features.chunks[0]
        # What a student trained from this dataset depends on (the student grid's cache key uses it).
        self.provenance = {
            "synthetic_sha256": store.meta["synthetic_sha256"],
            "normalization": store.meta["normalization"],
            "teacher_id": teacher_id,
            "epoch": epoch,
            "checkpoint_sha256": store.checkpoint_sha256(teacher_id, epoch),
            "layer": layer,
            "views": self.views,
            "dtype": str(features.dtype),
            "codec": features.attrs.get("codec"),
            "view_seed": params.attrs.get("seed") if params is not None else None,
        }
        per_sample = (
            4 * int(np.prod(self.image_shape))
            + self.views * int(np.prod(self.feature_shape)) * features.dtype.itemsize
            + self.label_dtype.itemsize * int(np.prod(self.label_shape))
            + 4 * self.views * self.num_params
            + (4 * self.views * self.num_classes if with_logits else 0)
        )
        self.chunk_bytes = self.chunk * per_sample
        self._pid: int | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_pid=None, _arrays={}, _cache=OrderedDict())
        return state

    def __len__(self) -> int:
        return self.length

    @property
    def num_chunks(self) -> int:
        return -(-self.length // self.chunk)

    def _open(self) -> None:
        if self._pid != os.getpid():
            store = FeatureStore(self.path)
            self._arrays = {
                "images": store.array("synthetic/images"),
                "labels": store.array("synthetic/labels"),
                "features": store.features(self.teacher_id, self.epoch, self.layer),
            }
            params = store.view_params(self.teacher_id)
            if params is not None:
                self._arrays["params"] = params
            if self.with_logits:
                self._arrays["logits"] = store.logits(self.teacher_id, self.epoch)
            self._cache.clear()
            self._pid = os.getpid()

    def cached_bytes(self) -> int:
        return sum(a.nbytes for chunk in self._cache.values() for a in chunk.values())

    def _chunk(self, index: int) -> dict[str, np.ndarray]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        self._open()
        part = slice(index * self.chunk, min(self.length, (index + 1) * self.chunk))
        chunk: dict[str, np.ndarray] = {}
        for name, array in self._arrays.items():
            try:
                chunk[name] = np.asarray(array[part])
            except Exception as exc:
                raise BadInput(
                    f"store {self.path}: cannot read samples {part.start}:{part.stop} of {array.path}: "
                    f"{str(exc).splitlines()[0]}"
                ) from None
        if not np.isfinite(chunk["features"]).all():
            raise NumericalFault(
                f"store {self.path}: teacher features {self._arrays['features'].path} hold NaN or Inf in samples "
                f"{part.start}:{part.stop}"
            )
        self._cache[index] = chunk
        while len(self._cache) > 1 and self.cached_bytes() > self.cache_bytes:
            self._cache.popitem(last=False)
        return chunk

    def get_batch(self, indices: Sequence[int], views: Sequence[int] | None = None) -> Batch:
        """Images (B,C,H,W) float32, the features of the chosen views (B,...) float32, labels (B,) int64 (soft:
        (B, classes) float32), the (B,P) augmentation parameters that produce each chosen view (zeros for view 0,
        the clean image) and, read ``with_logits``, the teacher's (B, classes) logits of those views."""
        samples = np.asarray(indices, dtype=np.int64)
        chosen = np.zeros(len(samples), np.int64) if views is None else np.asarray(views, dtype=np.int64)
        if len(samples) and (samples.min() < 0 or samples.max() >= self.length):
            raise IndexError(f"sample index out of range 0..{self.length - 1}")
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= self.views):
            raise IndexError(f"view index out of range 0..{self.views - 1}")
        images = np.empty((len(samples), *self.image_shape), np.float32)
        features = np.empty((len(samples), *self.feature_shape), np.float32)
        labels = np.empty((len(samples), *self.label_shape), self.label_dtype)
        params = np.zeros((len(samples), self.num_params), np.float32)
        logits = np.empty((len(samples), self.num_classes), np.float32) if self.with_logits else None
        chunk_of = samples // self.chunk
        for index in np.unique(chunk_of):
            rows = np.flatnonzero(chunk_of == index)
            chunk = self._chunk(int(index))
            offsets = samples[rows] - index * self.chunk
            images[rows] = chunk["images"][offsets]
            features[rows] = chunk["features"][offsets, chosen[rows]]
            labels[rows] = chunk["labels"][offsets]
            if "params" in chunk:
                params[rows] = chunk["params"][offsets, chosen[rows]]
            if logits is not None:
                logits[rows] = chunk["logits"][offsets, chosen[rows]]
        batch = _batch(images, features, labels, params)
        return batch if logits is None else (*batch, torch.from_numpy(logits))

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> Batch:
        pairs = [(int(k), 0) if isinstance(k, int | np.integer) else k for k in keys]
        return self.get_batch([p[0] for p in pairs], [p[1] for p in pairs])

    def __getitem__(self, key: int | tuple[int, int]) -> Batch:
        return tuple(part[0] for part in self.__getitems__([key]))


def _batch(images: np.ndarray, features: np.ndarray, labels: np.ndarray, params: np.ndarray) -> Batch:
    return (
        torch.from_numpy(images),
        torch.from_numpy(features),
        torch.from_numpy(labels),
        torch.from_numpy(params),
    )


class InMemoryFeatures(torch.utils.data.Dataset):
    """The same batches as a :class:`FeatureDataset`, from tensors loaded whole: the in-memory reference the
    streaming reader is measured against (bench/store.py), and a choice for stores that fit in memory."""

    def __init__(self, source: FeatureDataset):
        self.path, self.teacher_id, self.epoch, self.layer = (
            source.path,
            source.teacher_id,
            source.epoch,
            source.layer,
        )
        self.views, self.chunk, self.num_params = source.views, source.chunk, source.num_params
        self.feature_shape, self.image_shape = source.feature_shape, source.image_shape
        self.label_shape, self.label_dtype = source.label_shape, source.label_dtype
        self.view_policy, self.chunk_bytes = source.view_policy, 0
        store = FeatureStore(source.path)
        images, labels = store.synthetic()
        params = store.view_params(source.teacher_id)
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        features = np.asarray(store.features(source.teacher_id, source.epoch, source.layer)[...])
        self.features = torch.from_numpy(features.astype(np.float32))
        shape = (len(images), self.views, self.num_params)
        self.params = torch.from_numpy(np.asarray(params[...])) if params is not None else torch.zeros(shape)

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> Batch:
        pairs = torch.tensor([(k, 0) if isinstance(k, int | np.integer) else k for k in keys]).view(-1, 2)
        samples, views = pairs[:, 0], pairs[:, 1]
        return (
            self.images[samples],
            self.features[samples, views],
            self.labels[samples],
            self.params[samples, views],
        )
