"""The DC MLP: flatten, 128, 128, classes."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .registry import register_model
from .split import SplitNet


def build_mlp(in_channels: int, num_classes: int, image_size: int, width: int = 128) -> SplitNet:
    stages = OrderedDict(
        flatten=nn.Flatten(),
        fc1=nn.Sequential(nn.Linear(in_channels * image_size * image_size, width), nn.ReLU(inplace=True)),
        fc2=nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True)),
        fc3=nn.Linear(width, num_classes),
    )
    return SplitNet(stages, split_points=("fc1", "fc2"), default_split="fc2")


register_model("mlp", build_mlp)
