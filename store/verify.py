"""``elfdd verify``: layout, completeness markers, every chunk's checksum and the provenance hashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from ..pipeline.errors import BadInput
from . import location
from .chunks import changed_chunks, chunk_grid, missing_chunks
from .layout import content_sha256
from .reader import FeatureStore


def _walk_arrays(group: zarr.Group, prefix: str = ""):
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            yield path, node
        else:
            yield from _walk_arrays(node, path + "/")


def verify_store(path: str | Path) -> list[str]:
    """Return the problems found (empty when the store is sound)."""
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
        if content_sha256(images, labels) != store.meta["synthetic_sha256"]:
            problems.append("synthetic set does not match synthetic_sha256")
    except (BadInput, Exception) as exc:  # a damaged synthetic chunk is already listed above
        problems.append(f"synthetic set unreadable: {str(exc).splitlines()[0]}")
    for teacher in store.teachers():
        problems += _view_problems(store, teacher)
        manifest = _manifest_beside(store.path, teacher)
        for epoch in store.epochs(teacher):
            sha = store.root[f"teachers/{teacher}/epoch_{epoch:04d}"].attrs.get("checkpoint_sha256")
            if not sha:
                problems.append(f"teachers/{teacher}/epoch_{epoch:04d}: no checkpoint_sha256")
            elif manifest is not None:
                recorded = {c["epoch"]: c["sha256"] for c in manifest.get("checkpoints", [])}
                if recorded.get(epoch) not in (None, sha):
                    problems.append(
                        f"teachers/{teacher}/epoch_{epoch:04d}: checkpoint_sha256 differs from the run's manifest"
                    )
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
            where = f"teachers/{teacher}/epoch_{epoch:04d}/{layer}"
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


def _manifest_beside(store_path: Path, teacher: str) -> dict | None:
    """The teacher manifest of the run directory holding the store, when there is one (a local store)."""
    if location.is_url(store_path):
        return None
    manifest = Path(store_path).parent / "checkpoints" / teacher / "manifest.json"
    try:
        return json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None
