"""Writing the store: the synthetic set once, then teacher features per checkpoint epoch and layer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..pipeline.errors import BadInput
from .codecs import describe_codecs, lossless_codecs
from .layout import (
    FEATURE_DIMS,
    SCHEMA,
    VECTOR_FEATURE_DIMS,
    content_sha256,
    epoch_path,
    feature_path,
    logits_path,
    teacher_path,
)

CHUNK_BYTES = 4 << 20


def _sample_chunks(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """Chunk along samples only (about 4 MB a chunk), so a reader fetches whole samples."""
    per_sample = max(1, int(np.prod(shape[1:])) * itemsize)
    return (max(1, min(shape[0], CHUNK_BYTES // per_sample)), *shape[1:])


def write_array(
    group: zarr.Group,
    name: str,
    data: np.ndarray,
    dims: Sequence[str],
    attrs: dict[str, Any],
    clevel: int = 5,
) -> zarr.Array:
    """Create (or replace) an array, write every chunk, then mark it ``complete`` (the marker comes last)."""
    fill = float("nan") if np.issubdtype(data.dtype, np.floating) else 0
    array = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=_sample_chunks(data.shape, data.dtype.itemsize),
        compressors=lossless_codecs(clevel),
        fill_value=fill,
        dimension_names=list(dims),
        overwrite=True,
    )
    array[...] = data
    array.attrs.update({**attrs, "codec": describe_codecs(clevel), "complete": True})
    return array


def create_store(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    dataset: str,
    num_classes: int,
    normalization: dict[str, list[float]],
    version: str,
) -> str:
    """Create the store with its synthetic set, or check that an existing one holds the same set."""
    digest = content_sha256(images.astype(np.float32), labels.astype(np.int64))
    if Path(path).exists():
        from .reader import FeatureStore

        existing = FeatureStore(path).meta["synthetic_sha256"]
        if existing != digest:
            raise BadInput(
                f"store {path} holds synthetic set {existing[:12]}, not this run's {digest[:12]}; use a new store path"
            )
        return digest
    root = zarr.open_group(str(path), mode="w-")
    synthetic = root.create_group("synthetic")
    write_array(synthetic, "images", images.astype(np.float32), ("sample", "channel", "y", "x"), {})
    write_array(synthetic, "labels", labels.astype(np.int64), ("sample",), {})
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


def write_teacher(path: Path, teacher_id: str, attrs: dict[str, Any]) -> None:
    root = zarr.open_group(str(path), mode="r+")
    root.require_group(teacher_path(teacher_id)).attrs.update(attrs)


def write_epoch_features(
    path: Path,
    teacher_id: str,
    epoch: int,
    checkpoint_sha256: str,
    features: dict[str, np.ndarray],
    logits: np.ndarray,
    view_policy: str,
    dtype: str = "float16",
    clevel: int = 5,
) -> None:
    """Write each layer's (N, V, ...) features and the (N, V, K) logits of one checkpoint."""
    root = zarr.open_group(str(path), mode="r+")
    group = root.require_group(epoch_path(teacher_id, epoch))
    group.attrs.update({"epoch": int(epoch), "checkpoint_sha256": checkpoint_sha256})
    for layer, values in features.items():
        if not np.isfinite(values).all():
            raise BadInput(f"teacher {teacher_id} epoch {epoch} layer {layer}: features hold NaN or Inf")
        dims = FEATURE_DIMS if values.ndim == 5 else VECTOR_FEATURE_DIMS
        name = feature_path(teacher_id, epoch, layer).rsplit("/", 1)[1]
        write_array(
            group, name, values.astype(dtype), dims, {"layer": layer, "view_policy": view_policy}, clevel
        )
    write_array(
        group,
        logits_path(teacher_id, epoch).rsplit("/", 1)[1],
        logits.astype(np.float32),
        ("sample", "view", "class"),
        {"view_policy": view_policy},
        clevel,
    )
