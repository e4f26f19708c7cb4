"""Synthetic sets made elsewhere (MTT/DATM/FTD, DC/DSA/DM, .npz, PNG folders) read into elfdd, and elfdd's sets
written out in those formats. Each format is one module that calls ``register_format``; ``distill.method: file``
(pipeline.distill) imports through ``import_set``."""

from __future__ import annotations

from . import dc, mtt, npz, png  # noqa: E402,F401  (each registers its format)
from .registry import FORMATS, Format, RawSet, detect_format, files_sha256, list_formats, register_format
from .spaces import import_set, to_pixels

__all__ = [
    "FORMATS",
    "Format",
    "RawSet",
    "detect_format",
    "files_sha256",
    "import_set",
    "list_formats",
    "register_format",
    "to_pixels",
]
