"""``elfdd verify``: layout, completeness markers, every chunk's checksum and the provenance hashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from ..core.errors import BadInput
from ..core.io import json_sha256
from .chunks import damaged_contents, missing_chunks, walk_arrays
from .layout import SEAL, epoch_path, feature_path, synthetic_sha256
from .reader import FeatureStore


def verify_store(path: str | Path, recorded: dict[str, dict[int, str]] | None = None) -> list[str]:
    """Return the problems found (empty when the store is sound). ``recorded``: the checkpoints' sha256 per teacher
    id and epoch as the run that trained them recorded them (the pipeline's teacher manifests), checked against the
    store's ``checkpoint_sha256`` attributes."""
    try:
        store = FeatureStore(path)
    except BadInput as exc:
        return [str(exc)]
    problems: list[str] = seal_problems(store)
    for array_path, array in walk_arrays(store.root):
        problems += _array_problems(array_path, array, contents=True)
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
            node = store.root[where]  # not store.array(): an incomplete array is listed above, not raised
            if not isinstance(node, zarr.Array):
                continue
            shape = node.shape
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


def seal_problems(store: FeatureStore) -> list[str]:
    """What changed in a sealed store's layout since its extraction finished (writer.seal_store): an array no longer
    there (its ``zarr.json`` or its group's deleted) or the store's attributes (dataset, classes, provenance)
    edited. A store no extraction sealed (written by hand with the writer) has nothing to compare with."""
    seal = store.root.attrs.get(SEAL)
    if not isinstance(seal, dict):
        return []
    present = {path for path, _ in walk_arrays(store.root)}
    problems = [
        f"{path}: the array is gone (its zarr.json or its group's was deleted)"
        for path in seal.get("arrays", [])
        if path not in present
    ]
    if json_sha256(store.root.attrs.get("elfdd")) != seal.get("attributes_sha256"):
        problems.append(
            "the store's attributes (dataset, num_classes, provenance) changed after it was written"
        )
    return problems


def sealed(path: str | Path) -> bool:
    """Whether the store at ``path`` was finished by an extraction (a partial one is resumed, not discarded)."""
    try:
        return isinstance(FeatureStore(path).root.attrs.get(SEAL), dict)
    except BadInput:
        return False


def structure_problems(path: str | Path) -> list[str]:
    """The cheap part of verify_store (no chunk is read): the seal, every array's complete marker, every chunk file
    present. What a re-run checks before it keeps a store; the readers check chunk contents when they open it."""
    try:
        store = FeatureStore(path)
    except BadInput as exc:
        return [str(exc)]
    problems = seal_problems(store)
    for array_path, array in walk_arrays(store.root):
        problems += _array_problems(array_path, array, contents=False)
    return problems


def _array_problems(array_path: str, array: zarr.Array, contents: bool) -> list[str]:
    """An array's complete marker and chunk files; with ``contents``, its chunks read and checked against their
    recorded sha256 (only where none is missing: a missing chunk reads as the fill value)."""
    marker = (
        []
        if array.attrs.get("complete") is True
        else [f"{array_path}: no complete marker (writer did not finish)"]
    )
    missing = missing_chunks(array)
    return marker + (missing or (damaged_contents(array) if contents else []))
