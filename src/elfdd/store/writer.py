"""Writing the store: the synthetic set once, then teacher features per checkpoint epoch and layer."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from ..core.errors import BadInput
from ..core.io import json_sha256
from . import location
from .chunks import CHUNK_HASHES, chunk_hashes, walk_arrays
from .codecs import LOSSLESS, CodecSpec
from .layout import (
    FEATURE_DIMS,
    LABEL,
    SCHEMA,
    SEAL,
    VECTOR_FEATURE_DIMS,
    epoch_path,
    feature_path,
    hard_labels,
    label_array,
    synthetic_sha256,
    teacher_path,
)

CHUNK_BYTES = 4 << 20


def samples_per_chunk(n: int, *per_sample_shapes: tuple[int, ...], itemsize: int = 4) -> int:
    """Samples per chunk: a power of two (so chunk edges of arrays with different sample sizes nest) keeping the
    largest array's chunk near 4 MB, at most ``n``. Arrays are chunked along samples only, so a reader fetches
    whole samples with all their views."""
    per_sample = max(max(1, int(np.prod(shape))) * itemsize for shape in per_sample_shapes)
    return int(min(n, 2 ** max(0, int(np.log2(max(1, CHUNK_BYTES // per_sample))))))


def create_array(
    group: zarr.Group,
    name: str,
    shape: Sequence[int],
    dtype: str | np.dtype,
    dims: Sequence[str],
    chunk: int,
    codec: CodecSpec = LOSSLESS,
) -> zarr.Array:
    """Create (or replace) an array chunked along samples; it has no ``complete`` marker until :func:`finish`."""
    dtype = np.dtype(dtype)
    floating = np.issubdtype(dtype, np.floating)
    return group.create_array(
        name,
        shape=tuple(shape),
        dtype=dtype,
        chunks=(chunk, *shape[1:]),
        filters=codec.filters(dtype.name) if floating and codec.lossy else None,
        compressors=codec.compressors(),
        fill_value=float("nan") if floating else 0,
        dimension_names=list(dims),
        overwrite=True,
        config={
            "write_empty_chunks": True
        },  # every chunk is a file, so a missing one is damage (store.chunks)
    )


def finish(array: zarr.Array, attrs: dict[str, Any], codec: CodecSpec = LOSSLESS) -> None:
    """Write the array's attributes, the content sha256 of each chunk and the ``complete`` marker, after its last
    chunk."""
    array.attrs.update(
        {
            **attrs,
            "codec": codec.describe() if array.dtype.kind == "f" else LOSSLESS.describe(),
            CHUNK_HASHES: chunk_hashes(array),
            "complete": True,
        }
    )


def write_array(
    group: zarr.Group, name: str, data: np.ndarray, dims: Sequence[str], attrs: dict[str, Any]
) -> zarr.Array:
    """A whole lossless array in one go, marked complete last."""
    chunk = samples_per_chunk(len(data), data.shape[1:], itemsize=data.dtype.itemsize)
    array = create_array(group, name, data.shape, data.dtype, dims, chunk)
    array[...] = data
    finish(array, attrs)
    return array


def create_store(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    dataset: str,
    num_classes: int,
    normalization: dict[str, list[float]],
    version: str,
) -> str:
    """Create the store with its synthetic set, or check that an existing one holds the same set."""
    digest = synthetic_sha256(images, labels)
    where = location.normalize(path)
    if location.exists(where):
        from .reader import FeatureStore

        existing = FeatureStore(where).meta["synthetic_sha256"]
        if existing != digest:
            raise BadInput(
                f"store {where} holds synthetic set {existing[:12]}, not this run's {digest[:12]}; use a new store path"
            )
        return digest
    root = zarr.open_group(where, mode="w-")
    synthetic = root.create_group("synthetic")
    write_array(synthetic, "images", images.astype(np.float32), ("sample", "channel", "y", "x"), {})
    labels = label_array(labels)
    write_array(synthetic, "labels", labels, ("sample", "class")[: labels.ndim], {})
    root.attrs["elfdd"] = {
        "schema": SCHEMA,
        "dataset": dataset,
        "num_classes": int(num_classes),
        "image_shape": list(images.shape[1:]),
        "normalization": normalization,
        "synthetic_sha256": digest,
        "elfdd_version": version,
    }
    return digest


def seal_store(path: str | Path) -> None:
    """Record, last, what the finished store holds (every array's path) and the sha256 of its attributes, so that
    ``elfdd verify`` and a re-run find an array whose metadata was deleted or attributes edited afterwards."""
    root = zarr.open_group(location.normalize(path), mode="r+", use_consolidated=False)
    root.attrs[SEAL] = {
        "arrays": sorted(p for p, _ in walk_arrays(root)),
        "attributes_sha256": json_sha256(root.attrs["elfdd"]),
    }
    # Consolidated metadata for readers outside elfdd (xarray, dask: one read of the hierarchy); elfdd opens its
    # stores without it, so an array added by a later extraction is never hidden by a stale copy.
    with warnings.catch_warnings():  # zarr: "not part of the Zarr format 3 specification"
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(location.normalize(path))


def write_teacher(path: str | Path, teacher_id: str, attrs: dict[str, Any]) -> None:
    root = zarr.open_group(location.normalize(path), mode="r+", use_consolidated=False)
    root.require_group(teacher_path(teacher_id)).attrs.update(attrs)


def write_views(path: str | Path, teacher_id: str, params: np.ndarray, attrs: dict[str, Any]) -> None:
    """The (N, V, P) augmentation parameters of the stored views; view 0 is the un-augmented image."""
    root = zarr.open_group(location.normalize(path), mode="r+", use_consolidated=False)
    group = root.require_group(f"{teacher_path(teacher_id)}/views")
    write_array(group, "params", params.astype(np.float32), ("sample", "view", "param"), attrs)


class EpochWriter:
    """The feature arrays of one checkpoint, written block by block (a block = one chunk of samples), so stores
    larger than memory are written without holding whole arrays; ``close`` marks them complete.

    With a ``build_key`` (the key of the extraction's inputs) the epoch resumes: arrays left by a killed writer under
    the same key are reopened and ``done`` samples (whole chunks, counted in the group's ``samples_done`` after each
    block) are kept; ``finished`` when they are already complete. Without one, the arrays are always rewritten."""

    def __init__(
        self,
        path: str | Path,
        teacher_id: str,
        epoch: int,
        checkpoint_sha256: str,
        n: int,
        views: int,
        layer_shapes: dict[str, tuple[int, ...]],
        num_classes: int,
        view_policy: str,
        dtype: str = "float16",
        codec: CodecSpec = LOSSLESS,
        build_key: str | None = None,
    ):
        self.teacher_id, self.epoch, self.view_policy, self.dtype, self.codec = (
            teacher_id,
            epoch,
            view_policy,
            dtype,
            codec,
        )
        self.root = zarr.open_group(location.normalize(path), mode="r+", use_consolidated=False)
        self.group = self.root.require_group(epoch_path(teacher_id, epoch))
        shapes = [(views, *shape) for shape in layer_shapes.values()] + [(views, num_classes)]
        self.chunk = samples_per_chunk(n, *shapes)
        names = {layer: feature_path(teacher_id, epoch, layer).rsplit("/", 1)[1] for layer in layer_shapes}
        attrs = dict(self.group.attrs)
        resumable = (
            build_key is not None
            and attrs.get("build_key") == build_key
            and attrs.get("checkpoint_sha256") == checkpoint_sha256
            and all(name in self.group for name in [*names.values(), "logits"])
        )
        if resumable:
            self.arrays = {layer: _array(self.group, name) for layer, name in names.items()}
            self.logits = _array(self.group, "logits")
            self.done = int(cast(int, attrs.get("samples_done", 0)))
            return
        self.group.attrs.update(
            {
                "epoch": int(epoch),
                "checkpoint_sha256": checkpoint_sha256,
                "build_key": build_key,
                "samples_done": 0,
            }
        )
        self.arrays = {}
        for layer, shape in layer_shapes.items():
            dims = FEATURE_DIMS if len(shape) == 3 else VECTOR_FEATURE_DIMS
            self.arrays[layer] = create_array(
                self.group, names[layer], (n, views, *shape), dtype, dims, self.chunk, codec
            )
        self.logits = create_array(
            self.group, "logits", (n, views, num_classes), "float32", ("sample", "view", "class"), self.chunk
        )
        self.done = 0

    @property
    def finished(self) -> bool:
        """Every array of the epoch carries its ``complete`` marker."""
        return all(a.attrs.get("complete") is True for a in (*self.arrays.values(), self.logits))

    def write(self, start: int, features: dict[str, np.ndarray], logits: np.ndarray) -> None:
        """Samples ``start:start+len(logits)`` (chunk-aligned) of every layer and the logits."""
        stop = start + len(logits)
        for layer, values in features.items():
            if not np.isfinite(values).all():
                raise BadInput(
                    f"teacher {self.teacher_id} epoch {self.epoch} layer {layer}: features hold NaN or Inf"
                )
            self.arrays[layer][start:stop] = values.astype(self.dtype)
        self.logits[start:stop] = logits.astype(np.float32)
        self.group.attrs["samples_done"] = stop  # after the block's chunks: a resumed writer starts here

    def close(self) -> None:
        """Mark every array complete, after the ``label`` coordinate (each sample's class, beside the features so
        that ``xarray.open_zarr`` of the epoch group gives them a label coordinate)."""
        labels = np.asarray(_array(self.root, "synthetic/labels")[...])
        write_array(self.group, LABEL, hard_labels(labels).astype(np.int64), ("sample",), {})
        coordinate = {"coordinates": LABEL, "view_policy": self.view_policy}
        for layer, array in self.arrays.items():
            finish(array, {"layer": layer, **coordinate}, self.codec)
        finish(self.logits, coordinate)


def _array(group: zarr.Group, name: str) -> zarr.Array:
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise BadInput(f"store: {group.path}/{name} is a group where an array was written")
    return node


def write_epoch_features(
    path: str | Path,
    teacher_id: str,
    epoch: int,
    checkpoint_sha256: str,
    features: dict[str, np.ndarray],
    logits: np.ndarray,
    view_policy: str,
    dtype: str = "float16",
    codec: CodecSpec = LOSSLESS,
) -> None:
    """Each layer's whole (N, V, ...) features and the (N, V, K) logits of one checkpoint."""
    n, views, num_classes = logits.shape
    shapes = {layer: tuple(values.shape[2:]) for layer, values in features.items()}
    out = EpochWriter(
        path, teacher_id, epoch, checkpoint_sha256, n, views, shapes, num_classes, view_policy, dtype, codec
    )
    for start in range(0, n, out.chunk):
        stop = start + out.chunk
        out.write(start, {k: v[start:stop] for k, v in features.items()}, logits[start:stop])
    out.close()
