"""AlexNet as in the DC code (5 convs, 3 max-pools, one linear head)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .layers import first_conv_padding
from .registry import register_model
from .split import SplitNet


def build_alexnet(in_channels: int, num_classes: int, image_size: int) -> SplitNet:
    def conv(c_in: int, c_out: int, k: int, p: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, k, padding=p), nn.ReLU(inplace=True)]

    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["features1"] = nn.Sequential(
        *conv(in_channels, 128, 5, first_conv_padding(image_size, 2)), nn.MaxPool2d(2)
    )
    stages["features2"] = nn.Sequential(*conv(128, 192, 5, 2), nn.MaxPool2d(2))
    stages["features3"] = nn.Sequential(
        *conv(192, 256, 3, 1), *conv(256, 192, 3, 1), *conv(192, 192, 3, 1), nn.MaxPool2d(2)
    )
    stages["flatten"] = nn.Flatten()
    size = (image_size + 2 * (first_conv_padding(image_size, 2) - 2)) // 8
    stages["classifier"] = nn.Linear(192 * size * size, num_classes)
    return SplitNet(stages, split_points=("features1", "features2", "features3"), default_split="features3")


register_model("alexnet", build_alexnet)
