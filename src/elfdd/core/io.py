"""Atomic file writes and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so readers never see a half-written file. The file gets
    the mode a plain ``open()`` gives (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    import io as _io

    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_figure(fig, path: Path, dpi: int) -> None:
    """A matplotlib figure as PNG, atomically."""
    import io as _io

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else str(value)


def json_sha256(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys; pydantic models as their JSON dump): a key of what a
    result depends on."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_jsonable).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_json(path: Path, what: str) -> Any:
    from .errors import BadInput

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{what} not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not valid JSON: {path}: {exc}") from None


def content_sha256(*arrays: np.ndarray) -> str:
    """Hash of arrays' dtype, shape and bytes: the same numbers give the same hash however they were stored."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, never repeating torch's advice to load it
    with ``weights_only=False`` (which would run the code inside)."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        needs = re.search(r"(GLOBAL [\w.]+|Unsupported global: [\w. ]+)", text)
        found = f" ({needs.group(1)})" if needs else ""
        return (
            f"it holds Python objects that need code to load{found}; elfdd loads tensors only and refuses it"
        )
    return text.splitlines()[0] if text else type(exc).__name__
