"""CIFAR-style ResNet18 (3x3 stem, no max-pool) as in the DC/ELF code, with the ELF split inside stage 4."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from .layers import norm_layer, pooled_head
from .registry import register_model
from .split import SplitNet


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = norm_layer(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), norm_layer(norm, c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def build_resnet18(in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> SplitNet:
    del image_size  # the global pool makes the network size-agnostic
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), norm_layer(norm, 64), nn.ReLU(inplace=True)
    )
    c_in = 64
    for i, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2)], start=1):
        stages[f"layer{i}"] = nn.Sequential(
            BasicBlock(c_in, width, stride, norm), BasicBlock(width, width, 1, norm)
        )
        c_in = width
    # ELF cuts stage 4 between its two blocks (ResNet18_Layered: layer5_befor / layer5_after).
    stages["layer4_0"] = BasicBlock(256, 512, 2, norm)
    stages["layer4_1"] = BasicBlock(512, 512, 1, norm)
    stages.update(pooled_head(512, num_classes, "fc"))
    return SplitNet(
        stages, split_points=("layer1", "layer2", "layer3", "layer4_0", "layer4_1"), default_split="layer4_0"
    )


register_model("resnet18", build_resnet18)
register_model("resnet18_bn", build_resnet18, norm="batch")
