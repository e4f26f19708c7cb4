"""The split contract: a network is an ordered sequence of named stages that can be cut after any split point."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class SplitNet(nn.Sequential):
    """A network whose forward pass is its named children in order.

    ``front(x, split)`` runs the children up to and including ``split``; ``rear(h, split)`` runs the rest.
    Because the stages are the network's own modules (not rewritten copies), ``forward == rear(front)``
    holds by construction and teacher features can be taken by module name with a forward hook.
    """

    def __init__(
        self, stages: OrderedDict[str, nn.Module], split_points: tuple[str, ...], default_split: str
    ):
        super().__init__(stages)
        unknown = [s for s in split_points if s not in stages]
        if unknown:
            raise ValueError(f"split points {unknown} are not stages of the network")
        self.split_points = tuple(split_points)
        self.default_split = default_split

    def _cut(self, split: str | None) -> int:
        split = split or self.default_split
        if split not in self.split_points:
            raise KeyError(f"unknown split point {split!r}; choose one of {list(self.split_points)}")
        return list(self._modules).index(split) + 1

    def front(self, x: torch.Tensor, split: str | None = None) -> torch.Tensor:
        for module in list(self._modules.values())[: self._cut(split)]:
            x = module(x)
        return x

    def rear(self, h: torch.Tensor, split: str | None = None) -> torch.Tensor:
        for module in list(self._modules.values())[self._cut(split) :]:
            h = module(h)
        return h

    def feature_shape(self, input_shape: tuple[int, ...], split: str | None = None) -> tuple[int, ...]:
        """Shape of ``front(x)`` for one sample of ``input_shape`` (C, H, W), without the batch dim. The probe is
        made on the device (and in the dtype) of the network's parameters, wherever the network was moved."""
        param = next(self.parameters(), None)
        device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), None)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            probe = torch.zeros(1, *input_shape, device=device, dtype=dtype)
            shape = tuple(self.front(probe, split).shape[1:])
        self.train(was_training)
        return shape
