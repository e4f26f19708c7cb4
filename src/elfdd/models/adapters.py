"""Learned shape adapters between a student's front output and the teacher feature (training only)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class FeatureAdapter(nn.Module):
    """Maps features of shape ``source`` to shape ``target`` (per sample, no batch dim).

    Feature maps: 1x1 conv for channels, then area/bilinear resize for the spatial size.
    Anything involving a vector: flatten + linear. Equal shapes: identity.
    """

    def __init__(self, source: tuple[int, ...], target: tuple[int, ...], relu: bool = False):
        super().__init__()
        self.source, self.target = tuple(source), tuple(target)
        self.relu = relu
        self.conv: nn.Module | None = None
        self.linear: nn.Module | None = None
        if self.source == self.target:
            return
        if len(self.source) == 3 and len(self.target) == 3:
            self.conv = (
                nn.Conv2d(self.source[0], self.target[0], 1)
                if self.source[0] != self.target[0]
                else nn.Identity()
            )
        else:
            self.linear = nn.Linear(math.prod(self.source), math.prod(self.target))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return h
        h = self._map(h)
        return F.relu(h) if self.relu else h

    def _map(self, h: torch.Tensor) -> torch.Tensor:
        if self.linear is not None:
            return self.linear(h.flatten(1)).view(-1, *self.target)
        assert self.conv is not None  # no linear map: a convolution
        h = self.conv(h)
        size = (self.target[1], self.target[2])
        if tuple(h.shape[-2:]) == size:
            return h
        if h.shape[-2] >= size[0] and h.shape[-1] >= size[1]:
            return F.adaptive_avg_pool2d(h, size)
        return F.interpolate(h, size=size, mode="bilinear", align_corners=False)

    @property
    def is_identity(self) -> bool:
        return self.source == self.target


def adapter_pair(
    student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], rear_relu: bool = False
) -> nn.ModuleDict:
    """The two adapters ELF's losses need: student->teacher (front loss) and teacher->student (rear loss).
    ``rear_relu``: the teacher->student map ends in a ReLU, so the student's rear sees non-negative input as from
    its own front (set where that front ends in a ReLU); equal shapes need no map at all."""
    return nn.ModuleDict(
        {
            "to_teacher": FeatureAdapter(student_shape, teacher_shape),
            "from_teacher": FeatureAdapter(teacher_shape, student_shape, relu=rear_relu),
        }
    )
