"""Take intermediate features by module name with forward hooks (as torchdistill), never by rewritten copies."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def forward_with_features(
    model: nn.Module, x: torch.Tensor, layers: Iterable[str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model(x)`` once and return its logits and the outputs of the named submodules."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:
        module = model.get_submodule(name)
        handles.append(
            module.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
        )
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return logits, captured
