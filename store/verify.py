"""``elfdd verify``: layout, completeness markers, every chunk's checksum and the provenance hashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from ..core.errors import BadInput
from .chunks import changed_chunks, chunk_grid, missing_chunks
from .layout import epoch_path, feature_path, synthetic_sha256
from .reader import FeatureStore


def _walk_arrays(group: zarr.Group, prefix: str = ""):
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            yield path, node
        else:
            yield from _walk_arrays(node, path + "/")


def verify_store(path: str | Path, recorded: dict[str, dict[int, str]] | None = None) -> list[str]:
    """Return the problems found (empty when the store is sound). ``recorded``: the checkpoints' sha256 per teacher
    id and epoch as the run that trained them recorded them (the pipeline's teacher manifests), checked against the
    store's ``checkpoint_sha256`` attributes."""
    try:
        store = FeatureStore(path)
    except BadInput as exc:
        return [str(exc)]
    problems: list[str] = []
    for array_path, array in _walk_arrays(store.root):
        if array.attrs.get("complete") is not True:
            problems.append(f"{array_path}: no complete marker (writer did not finish)")
        missing = missing_chunks(array)
        problems += missing
        if missing:
            continue  # a missing chunk reads as the fill value: its content cannot be checked
        unreadable = []
        for _, chunk in chunk_grid(array):
            try:
                array[chunk]
            except Exception as exc:
                where = ",".join(f"{s.start}:{s.stop}" for s in chunk)
                unreadable.append(f"{array_path}[{where}]: {str(exc).splitlines()[0]}")
        problems += unreadable or changed_chunks(array)
    try:
        images, labels = store.synthetic()
        if synthetic_sha256(images, labels) != store.meta["synthetic_sha256"]:
            problems.append("synthetic set does not match synthetic_sha256")
    except (BadInput, Exception) as exc:  # a damaged synthetic chunk is already listed above
        problems.append(f"synthetic set unreadable: {str(exc).splitlines()[0]}")
    for teacher in store.teachers():
        problems += _view_problems(store, teacher)
        for epoch in store.epochs(teacher):
            where = epoch_path(teacher, epoch)
            sha = store.root[where].attrs.get("checkpoint_sha256")
            if not sha:
                problems.append(f"{where}: no checkpoint_sha256")
            elif (recorded or {}).get(teacher, {}).get(epoch) not in (None, sha):
                problems.append(f"{where}: checkpoint_sha256 differs from the run's teacher manifest")
    return problems


def _view_problems(store: FeatureStore, teacher: str) -> list[str]:
    """Stored views agree with the features: V > 1 needs views/params of shape (N, V, P) with view 0 clean."""
    problems = []
    try:
        params = store.view_params(teacher)
    except BadInput as exc:
        return [str(exc)]
    for epoch in store.epochs(teacher):
        for layer in store.layers(teacher, epoch):
            where = feature_path(teacher, epoch, layer)
            shape = store.root[where].shape
            if shape[1] > 1 and (params is None or tuple(params.shape[:2]) != tuple(shape[:2])):
                problems.append(
                    f"{where}: {shape[1]} views but views/params does not match (N, V) = {shape[:2]}"
                )
    if params is not None:
        try:
            if np.any(params[:, 0] != 0):
                problems.append(f"teachers/{teacher}/views/params: view 0 is not the clean image")
        except Exception:  # an unreadable chunk is already listed
            pass
    return problems
