"""The distilled (synthetic) set: tensors plus what produced them, saved atomically with a content hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.errors import BadInput
from ..core.io import atomic_torch_save, load_failure
from ..store.layout import synthetic_sha256


@dataclass
class SyntheticSet:
    images: torch.Tensor  # float32 (N, C, H, W), normalised like the real data
    labels: torch.Tensor  # int64 (N,), or soft labels: float32 (N, classes) probabilities
    method: str
    ipc: int
    dataset: str
    num_classes: int
    normalization: dict[str, list[float]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def soft(self) -> bool:
        return self.labels.ndim == 2

    @property
    def sha256(self) -> str:
        return synthetic_sha256(self.images.detach().cpu().numpy(), self.labels.detach().cpu().numpy())

    def save(self, path: Path) -> str:
        """Write ``path`` (loadable with ``torch.load(weights_only=True)``) and return the content sha256."""
        digest = self.sha256
        atomic_torch_save(
            path,
            {
                "images": self.images.detach().float().cpu().contiguous(),
                "labels": (self.labels.float() if self.soft else self.labels.long()).cpu().contiguous(),
                "method": self.method,
                "ipc": self.ipc,
                "dataset": self.dataset,
                "num_classes": self.num_classes,
                "normalization": self.normalization,
                "extra": self.extra,
                "sha256": digest,
            },
        )
        return digest


def load_synthetic(path: Path) -> SyntheticSet:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadInput(f"synthetic set not found: {path} (run the distill stage first)") from None
    except Exception as exc:  # torch raises many types for damaged files
        raise BadInput(f"synthetic set {path} cannot be loaded: {load_failure(exc)}") from None
    try:
        synthetic = SyntheticSet(
            images=blob["images"],
            labels=blob["labels"],
            method=blob["method"],
            ipc=blob["ipc"],
            dataset=blob["dataset"],
            num_classes=blob["num_classes"],
            normalization=blob["normalization"],
            extra=blob.get("extra", {}),
        )
    except (KeyError, TypeError) as exc:
        raise BadInput(f"synthetic set {path} lacks field {exc}") from None
    if synthetic.sha256 != blob.get("sha256"):
        raise BadInput(f"synthetic set {path} does not match its recorded sha256 (damaged or edited)")
    return synthetic


def synthetic_problems(path: Path) -> list[str]:
    """What is wrong with a saved synthetic set (empty: it matches its recorded sha256)."""
    try:
        load_synthetic(path)  # checks the set against its recorded sha256
    except BadInput as exc:
        return [str(exc)]
    return []
