"""The format registry: how a synthetic set's files are read (and, where a format can hold elfdd's sets, written)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...core.errors import BadInput
from ...core.io import load_failure, sha256_file
from ...core.registry import Registry


@dataclass
class RawSet:
    """A set as its files hold it: images (N, C, H, W or N, H, W, C, or N, H, W), labels (N ints or N x K floats),
    the space the format saves images in by convention (None: the user must say), and what else the files hold."""

    images: torch.Tensor
    labels: torch.Tensor
    space: str | None
    files: list[Path]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    """``read(paths, options) -> RawSet``; ``write(synthetic, out) -> [paths]`` where the format can hold a set;
    ``claims(path)``: whether an input path looks like this format (for ``format: auto``)."""

    read: Callable[[list[Path], dict[str, Any]], RawSet]
    claims: Callable[[Path], bool]
    write: Callable[[Any, Path], list[Path]] | None = None


FORMATS: Registry[Format] = Registry("synthetic-set format")


def register_format(name: str, fmt: Format) -> None:
    """Register a synthetic-set format as ``distill.source.format`` value ``name``."""
    FORMATS.register(name, fmt)


def list_formats() -> list[str]:
    return FORMATS.names()


def detect_format(paths: list[Path]) -> str:
    """The registered format that claims the first input path."""
    if not paths:
        raise BadInput("distill.source.paths is empty: name the files of the set to import")
    for name, fmt in FORMATS.items():
        if fmt.claims(paths[0]):
            return name
    raise BadInput(
        f"cannot tell the format of {paths[0]}; set distill.source.format to one of {', '.join(list_formats())}"
    )


def load_tensors(path: Path, what: str) -> Any:
    """``torch.load`` that runs no code (weights_only); numpy scalars and dtypes, which the DC and MTT scripts
    save beside their tensors, are allowed as data."""
    import numpy as np

    scalar = np.core.multiarray.scalar  # type: ignore[attr-defined]  # the name old pickles refer to
    allowed = [scalar, np.dtype, *{type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8")}]
    if not path.is_file():
        raise BadInput(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types: damaged file, or a pickle that needs code to load
        raise BadInput(f"{what} {path} cannot be loaded: {load_failure(exc)}") from None


def tensor_of(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise BadInput(f"{what} is a {type(value).__name__}, not a tensor")
    return value.detach().cpu()


def files_sha256(paths: list[str], what: str = "distill.source.paths") -> dict[str, str]:
    """sha256 of every file under ``paths`` (a folder: every file in it), by path: what an import is keyed on;
    ``what``: the config field that names them."""
    files = {}
    for given in map(Path, paths):
        if not given.exists():
            raise BadInput(f"{what}: {given} does not exist")
        for path in sorted(given.rglob("*")) if given.is_dir() else [given]:
            if path.is_file():
                files[str(path)] = sha256_file(path)
    return files
