"""``.npz`` with ``images`` (N, C, H, W or N, H, W, C; float or uint8) and ``labels`` (N ints, or N x classes
float soft labels), read with ``allow_pickle=False``, and optionally ``space`` (a string: pixel, normalized or zca),
which elfdd's export writes. A file without it says nothing of its space: give ``--space``
(``distill.source.space``)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.errors import BadInput
from ...core.io import atomic_write_bytes
from .registry import Format, RawSet, register_format

SPACES = ("pixel", "normalized", "zca")


def read(paths: list[Path], options: dict[str, Any]) -> RawSet:
    if len(paths) != 1:
        raise BadInput(f"an .npz set is one file, got {len(paths)}")
    path = paths[0]
    try:
        with np.load(path, allow_pickle=False) as held:
            missing = [k for k in ("images", "labels") if k not in held.files]
            if missing:
                raise BadInput(f"{path} lacks array {missing[0]!r} (has {', '.join(held.files) or 'none'})")
            images, labels = held["images"], held["labels"]
            space = str(held["space"]) if "space" in held.files else None
    except FileNotFoundError:
        raise BadInput(f".npz set not found: {path}") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:  # object arrays need pickle: refused
        raise BadInput(f"{path} cannot be read as plain arrays: {str(exc).splitlines()[0]}") from None
    if images.dtype.kind not in "uif" or labels.dtype.kind not in "uif":
        raise BadInput(f"{path}: images and labels must be numbers, got {images.dtype} and {labels.dtype}")
    if space not in (None, *SPACES):
        raise BadInput(f"{path}: its space {space!r} is none of {', '.join(SPACES)}")
    return RawSet(torch.from_numpy(np.array(images)), torch.from_numpy(np.array(labels)), space, paths)


def write(synthetic, out: Path) -> list[Path]:
    """``images`` (N, C, H, W float32, the run's input space), ``labels`` and ``space`` (normalized, or zca for a
    whitened set), so that the file imports back without ``--space``."""
    import io

    buffer = io.BytesIO()
    space = "zca" if synthetic.normalization.get("zca_sha256") else "normalized"
    np.savez(
        buffer,
        images=synthetic.images.float().numpy(),
        labels=synthetic.labels.numpy(),
        space=np.array(space),
    )
    atomic_write_bytes(out, buffer.getvalue())
    return [out]


def claims(path: Path) -> bool:
    return path.suffix == ".npz"


register_format("npz", Format(read, claims, write))
