"""One registry makes every architecture reachable by name (as timm's ``create_model``)."""

from __future__ import annotations

import fnmatch
import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.registry import Registry
from .split import SplitNet

Builder = Callable[..., SplitNet]
_INPUT_ARGS = {"in_channels", "num_classes", "image_size"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Builder
    defaults: dict[str, Any] = field(default_factory=dict)

    def accepted_kwargs(self) -> set[str]:
        return set(inspect.signature(self.builder).parameters) - _INPUT_ARGS


MODELS: Registry[ModelSpec] = Registry("architecture")


def register_model(name: str, builder: Builder, **defaults: Any) -> None:
    """Register ``builder(in_channels, num_classes, image_size, **kwargs) -> SplitNet`` as ``name``."""
    MODELS.register(name, ModelSpec(name, builder, dict(defaults)))


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in MODELS if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> ModelSpec:
    return MODELS.lookup(name)


def create_model(name: str, in_channels: int, num_classes: int, image_size: int, **kwargs: Any) -> SplitNet:
    """Build a registered architecture; unknown keyword arguments are refused with the accepted ones named."""
    spec = get_spec(name)
    unknown = sorted(set(kwargs) - spec.accepted_kwargs())
    if unknown:
        raise KeyError(f"{name} does not take {unknown}; it accepts {sorted(spec.accepted_kwargs())}")
    return spec.builder(
        in_channels=in_channels, num_classes=num_classes, image_size=image_size, **{**spec.defaults, **kwargs}
    )


def probe_model(name: str, in_channels: int, num_classes: int, image_size: int, **kwargs: Any) -> SplitNet:
    """A model built to be looked at or timed, not trained: its weights come from a fork of the global random
    streams, so a probe (cached, or run only on a machine's first use) never shifts a seeded stage's draws."""
    with torch.random.fork_rng(devices=[]):
        return create_model(name, in_channels, num_classes, image_size, **kwargs)


def split_points(name: str, **kwargs: Any) -> tuple[tuple[str, ...], str]:
    """The named split points of an architecture and its default split (ELF's cut): built once per architecture and
    keyword arguments, on the meta device (no weights allocated)."""
    return _split_points(name, json.dumps(kwargs, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _split_points(name: str, kwargs: str) -> tuple[tuple[str, ...], str]:
    with torch.device("meta"):
        model = create_model(name, in_channels=1, num_classes=2, image_size=28, **json.loads(kwargs))
    return tuple(model.split_points), model.default_split
