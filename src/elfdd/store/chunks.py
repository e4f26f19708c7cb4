"""Every chunk an array's shape implies: which are missing from storage, and a content hash of each.

zarr reads a chunk that was never written (or was deleted) as the fill value without an error, so a missing chunk
would look like NaN features. The writer records each chunk's content sha256 when it marks an array complete;
``elfdd verify`` and the student reader use these helpers to name a missing or replaced chunk instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import zarr
from zarr.core.sync import sync

from ..core.io import content_sha256

CHUNK_HASHES = "chunk_sha256"  # array attribute: the content sha256 of every chunk, in chunk-grid (C) order


def walk_arrays(group: zarr.Group, prefix: str = "") -> Iterator[tuple[str, zarr.Array]]:
    """(path, array) of every array under ``group``, depth first."""
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            yield path, node
        else:
            yield from walk_arrays(node, path + "/")


def chunk_grid(array: zarr.Array) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """(chunk coordinates, the region it covers) of every chunk the array's shape implies, in C order."""
    counts = [-(-size // chunk) for size, chunk in zip(array.shape, array.chunks, strict=True)]
    for coords in itertools.product(*(range(c) for c in counts)):
        yield (
            coords,
            tuple(
                slice(i * k, min((i + 1) * k, s))
                for i, k, s in zip(coords, array.chunks, array.shape, strict=True)
            ),
        )


def chunk_hashes(array: zarr.Array) -> list[str]:
    """The content sha256 of every chunk (decoded values, so a lossy codec hashes what readers get)."""
    return [content_sha256(np.asarray(array[region])) for _, region in chunk_grid(array)]


async def _stored_keys(array: zarr.Array) -> set[str]:
    prefix = f"{array.path}/" if array.path else ""
    return {key[len(prefix) :] async for key in array.store.list_prefix(prefix)}


def missing_chunks(array: zarr.Array) -> list[str]:
    """One line per chunk the shape implies but the store does not hold: its coordinates and its file."""
    stored = sync(_stored_keys(array))
    problems = []
    for coords, _ in chunk_grid(array):
        key = array.metadata.encode_chunk_key(coords)
        if key not in stored:
            problems.append(f"{array.path}: chunk {coords} is missing (file {array.path}/{key})")
    return problems


def damaged_contents(array: zarr.Array) -> list[str]:
    """Every chunk read once: one line per chunk that does not decode (a flipped byte fails its checksum), naming
    the region; where every chunk decodes, one line per chunk whose content differs from the sha256 recorded at
    write time (none recorded: none)."""
    recorded = array.attrs.get(CHUNK_HASHES)
    expected = recorded if isinstance(recorded, list) else []
    unreadable, changed = [], []
    for index, (coords, region) in enumerate(chunk_grid(array)):
        try:
            values = np.asarray(array[region])
        except Exception as exc:
            where = ",".join(f"{s.start}:{s.stop}" for s in region)
            reason = str(exc).splitlines()[0].split(". Stored:")[0]  # not the raw checksum bytes
            unreadable.append(f"{array.path}[{where}]: {reason}")
            continue
        if index < len(expected) and content_sha256(values) != expected[index]:
            key = array.metadata.encode_chunk_key(coords)
            changed.append(
                f"{array.path}: chunk {coords} differs from the content recorded at write time "
                f"(file {array.path}/{key})"
            )
    return unreadable or changed
