"""ZCA whitening (as kornia's ZCAWhitening used by the DC/MTT code): fitted on the training split, then applied to
train images, test images and hence to everything computed from them (synthetic sets, teacher features)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.io import content_sha256


@dataclass(frozen=True)
class ZCA:
    mean: torch.Tensor  # (D,)
    transform: torch.Tensor  # (D, D), symmetric
    eps: float

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = 0.1) -> ZCA:
        """W = U diag(1 / sqrt(S + eps)) U^T of the covariance of the flattened images, in float64."""
        flat = x.reshape(len(x), -1).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        transform = eigenvectors @ torch.diag((eigenvalues.clamp_min(0) + eps).rsqrt()) @ eigenvectors.T
        return cls(mean.float(), transform.float(), eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)
        return ((flat - self.mean) @ self.transform).reshape(x.shape)

    @property
    def sha256(self) -> str:
        return content_sha256(self.mean.numpy(), self.transform.numpy())

    def state(self) -> dict:
        return {"mean": self.mean, "transform": self.transform, "eps": self.eps, "sha256": self.sha256}
