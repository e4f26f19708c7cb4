"""VGG11 as in the DC/ELF code (cfg 64 M 128 M 256 256 M 512 512 M 512 512 M: 8 convs with norm and ReLU, 5
max-pools), split after its fifth conv (ELF's VGG11_L5: front = cfg[:8], 512x4x4; rear = 512 M 512 512 M)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .layers import first_conv_padding, norm_layer, pooled_head
from .registry import register_model
from .split import SplitNet

# Stage name -> (output channels of each conv, whether a max-pool follows).
VGG11_STAGES = {
    "stage1": ((64,), True),
    "stage2": ((128,), True),
    "stage3": ((256, 256), True),
    "stage4a": ((512,), False),  # ELF's cut: cfg[:8] ends after this conv
    "stage4b": ((512,), True),
    "stage5": ((512, 512), True),
}


def build_vgg11(in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> SplitNet:
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    c_in, first = in_channels, True
    for name, (widths, pool) in VGG11_STAGES.items():
        layers: list[nn.Module] = []
        for width in widths:
            padding = first_conv_padding(image_size, 1) if first else 1
            layers += [
                nn.Conv2d(c_in, width, 3, padding=padding),
                norm_layer(norm, width),
                nn.ReLU(inplace=True),
            ]
            c_in, first = width, False
        if pool:
            layers.append(nn.MaxPool2d(2))
        stages[name] = nn.Sequential(*layers)
    stages.update(pooled_head(512, num_classes, "classifier"))
    return SplitNet(
        stages, split_points=("stage2", "stage3", "stage4a", "stage4b", "stage5"), default_split="stage4a"
    )


register_model("vgg11", build_vgg11)
register_model("vgg11_bn", build_vgg11, norm="batch")
