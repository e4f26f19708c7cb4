"""ELF's loss modes and feature losses, with the reference code's inconsistencies fixed (notes/method.md E.1.2)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

# Which terms each loss mode sums. Unlike the reference, front_task uses the chosen feature loss and front_rear
# keeps lambda_rear.
LOSS_TERMS: dict[str, tuple[str, ...]] = {
    "task": ("task",),
    "front_rear_task": ("front", "rear", "task"),
    "front_task": ("front", "task"),
    "rear_task": ("rear", "task"),
    "front_rear": ("front", "rear"),
}
# The name a loss mode has in results.json / the report.
RESULT_MODE = {"task": "baseline", "front_rear_task": "elf"}


def result_mode(loss_mode: str) -> str:
    return RESULT_MODE.get(loss_mode, loss_mode)


def feature_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Distance between the (adapted) student front output and the teacher feature, both (B, C, ...)."""
    if kind == "ce":
        # As the reference: soft-target cross-entropy with a softmax over channels at every position; the raw
        # (non-negative, unnormalised) teacher activations are the target.
        return F.cross_entropy(student, teacher)
    if kind == "l2":
        return F.mse_loss(student, teacher)
    if kind == "l1":
        return F.l1_loss(student, teacher)
    if kind == "cosine":
        # One cosine per sample (the reference took one over the whole batch flattened into a vector).
        return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1)).mean()
    raise ValueError(f"unknown feature loss {kind!r}")
