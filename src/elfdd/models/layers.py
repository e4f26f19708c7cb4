"""Small building blocks shared by the networks."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator

from torch import nn

NORMS = ("instance", "batch", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Instance norm as in the DC/ELF code (GroupNorm with one group per channel), batch norm, or none."""
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {list(NORMS)}")


def first_conv_padding(image_size: int, kernel_padding: int) -> int:
    """DC convention: 28x28 inputs get 2 extra pixels of padding so the trunk sees 32x32 (4x4 after 3 pools)."""
    return kernel_padding + 2 if image_size == 28 else kernel_padding


def pooled_head(channels: int, num_classes: int, classifier: str) -> OrderedDict[str, nn.Module]:
    """Global average pool, flatten and a linear classifier, as named stages."""
    return OrderedDict(
        [
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            (classifier, nn.Linear(channels, num_classes)),
        ]
    )


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """Forward passes inside leave every batch norm's running statistics as they were (momentum 0), while train-mode
    batch norm still normalises with the batch's own statistics."""
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
