"""LeNet-5 as in the DC code (two 5x5 convs with max-pools, then 120, 84, classes)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .registry import register_model
from .split import SplitNet


def build_lenet(in_channels: int, num_classes: int, image_size: int) -> SplitNet:
    pad = 2 if image_size == 28 else 0  # 28x28 inputs are padded to the 32x32 LeNet was made for
    size = ((image_size + 2 * pad - 4) // 2 - 4) // 2
    stages = OrderedDict(
        conv1=nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        ),
        conv2=nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        flatten=nn.Flatten(),
        fc1=nn.Sequential(nn.Linear(16 * size * size, 120), nn.ReLU(inplace=True)),
        fc2=nn.Sequential(nn.Linear(120, 84), nn.ReLU(inplace=True)),
        fc3=nn.Linear(84, num_classes),
    )
    return SplitNet(stages, split_points=("conv1", "conv2", "fc1", "fc2"), default_split="conv2")


register_model("lenet", build_lenet)
