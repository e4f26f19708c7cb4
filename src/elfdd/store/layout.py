"""Names and paths of the Zarr feature store (schema 1, docs/design.md)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..core.io import content_sha256

SCHEMA = 1
NAME_RE = re.compile(r"^[a-z0-9_]+$")
FEATURE_DIMS = ("sample", "view", "channel", "y", "x")
VECTOR_FEATURE_DIMS = ("sample", "view", "channel")
LABEL = (
    "label"  # each epoch group's coordinate array: the class of every sample (beside its features and logits)
)


def label_array(labels: np.ndarray) -> np.ndarray:
    """Labels as the store holds them: hard labels (N,) int64, soft labels (N, classes) float32."""
    return labels.astype(np.float32) if labels.ndim == 2 else labels.astype(np.int64)


def hard_labels(labels: Any) -> Any:
    """The class of every sample (a soft label's most probable class); numpy arrays or torch tensors."""
    return labels.argmax(1) if labels.ndim == 2 else labels


def synthetic_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """The synthetic set's content hash (images float32, labels as label_array)."""
    return content_sha256(images.astype(np.float32), label_array(labels))


SEAL = "sealed"  # root attribute written last by a finished extraction: its arrays and its attributes' sha256

REQUIRED_ATTRS = (
    "schema",
    "dataset",
    "num_classes",
    "image_shape",
    "normalization",
    "synthetic_sha256",
    "elfdd_version",
)


def check_name(name: str, what: str) -> str:
    """Teacher ids and layer names are plain names, never paths."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        from ..core.errors import BadInput

        raise BadInput(f"{what} {name!r} must match [a-z0-9_]+")
    return name


def epoch_group(epoch: int) -> str:
    return f"epoch_{int(epoch):04d}"


def teacher_path(teacher_id: str) -> str:
    return f"teachers/{check_name(teacher_id, 'teacher id')}"


def epoch_path(teacher_id: str, epoch: int) -> str:
    return f"{teacher_path(teacher_id)}/{epoch_group(epoch)}"


def feature_path(teacher_id: str, epoch: int, layer: str) -> str:
    return f"{epoch_path(teacher_id, epoch)}/{check_name(layer, 'layer')}"


def logits_path(teacher_id: str, epoch: int) -> str:
    return f"{epoch_path(teacher_id, epoch)}/logits"
