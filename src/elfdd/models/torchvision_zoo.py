"""torchvision architectures (built with ``weights=None``: nothing is downloaded) through the split contract.

Each keeps torchvision's own modules; only the first convolution is rebuilt for the dataset's channel count, and
the children are regrouped into named stages so ELF can cut them like the native networks."""

from __future__ import annotations

from collections import OrderedDict
from typing import cast

from torch import nn

from .registry import register_model
from .split import SplitNet


def _with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        cast("tuple[int, int]", conv.kernel_size),
        stride=cast("tuple[int, int]", conv.stride),
        padding=cast("str | tuple[int, int]", conv.padding),
        bias=conv.bias is not None,
    )


def build_tv_resnet18(in_channels: int, num_classes: int, image_size: int) -> SplitNet:
    """torchvision's ImageNet ResNet18 (7x7 stride-2 stem and max-pool), cut inside stage 4 as ELF cuts ResNets."""
    from torchvision.models import resnet18

    del image_size  # global pooling: any input size
    net = resnet18(weights=None, num_classes=num_classes)
    stages: OrderedDict[str, nn.Module] = OrderedDict(
        stem=nn.Sequential(_with_in_channels(net.conv1, in_channels), net.bn1, net.relu, net.maxpool),
        layer1=net.layer1,
        layer2=net.layer2,
        layer3=net.layer3,
        layer4_0=net.layer4[0],
        layer4_1=net.layer4[1],
        pool=net.avgpool,
        flatten=nn.Flatten(),
        fc=net.fc,
    )
    return SplitNet(
        stages, split_points=("layer1", "layer2", "layer3", "layer4_0", "layer4_1"), default_split="layer4_0"
    )


def build_tv_mobilenet_v3_small(in_channels: int, num_classes: int, image_size: int) -> SplitNet:
    """torchvision's MobileNetV3-Small; its 13 feature blocks grouped into stem, three stages and the head conv."""
    from torchvision.models import mobilenet_v3_small

    del image_size
    net = mobilenet_v3_small(weights=None, num_classes=num_classes)
    features = net.features
    stem = features[0]
    stem[0] = _with_in_channels(stem[0], in_channels)
    stages: OrderedDict[str, nn.Module] = OrderedDict(
        stem=stem,
        stage1=features[1:4],
        stage2=features[4:9],
        stage3=features[9:12],
        head_conv=features[12],
        pool=net.avgpool,
        flatten=nn.Flatten(),
        classifier=net.classifier,
    )
    return SplitNet(stages, split_points=("stage1", "stage2", "stage3", "head_conv"), default_split="stage3")


register_model("tv_resnet18", build_tv_resnet18)
register_model("tv_mobilenet_v3_small", build_tv_mobilenet_v3_small)
