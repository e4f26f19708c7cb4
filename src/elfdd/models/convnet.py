"""The DC/DM/MTT ConvNet: depth x (conv3x3, norm, ReLU, avgpool2), then one linear classifier."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .layers import first_conv_padding, norm_layer
from .registry import register_model
from .split import SplitNet


def _block(c_in: int, c_out: int, norm: str, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=padding),
        norm_layer(norm, c_out),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(2),
    )


def build_convnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    width: int = 128,
    depth: int = 3,
    norm: str = "instance",
    widths: list[int] | None = None,
) -> SplitNet:
    """``widths``: one width per block (overrides ``width`` and ``depth``), e.g. [128, 128, 512]: a teacher whose last
    block matches 512-channel students at a fraction of a 512-wide ConvNet's cost."""
    widths = list(widths) if widths is not None else [width] * depth
    if not widths or any(w < 1 for w in widths):
        raise TypeError(f"widths must be positive block widths, got {widths}")
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    size = image_size + 2 * (first_conv_padding(image_size, 1) - 1)
    c_in = in_channels
    for i, block_width in enumerate(widths):
        stages[f"block{i + 1}"] = _block(
            c_in, block_width, norm, first_conv_padding(image_size, 1) if i == 0 else 1
        )
        c_in, size = block_width, size // 2
    stages["flatten"] = nn.Flatten()
    stages["classifier"] = nn.Linear(c_in * size * size, num_classes)
    blocks = tuple(k for k in stages if k.startswith("block"))
    return SplitNet(stages, split_points=blocks, default_split=blocks[-1])


register_model("convnet", build_convnet)
register_model("convnet_bn", build_convnet, norm="batch")
# Width and depth variants, as in the DC/DM ablations (ConvNetW32/W64, ConvNetD2/D4).
register_model("convnet_w32", build_convnet, width=32)
register_model("convnet_w64", build_convnet, width=64)
register_model("convnet_d2", build_convnet, depth=2)
register_model("convnet_d4", build_convnet, depth=4)
