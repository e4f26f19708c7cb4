"""What the pipeline needs to know about an architecture before it trains one (as timm's ``feature_info``): its split
points and each one's feature shape, its default split, whether each front ends non-negative, the module classes it
is made of. Probed once per (architecture, input, keyword arguments) from a model built on a fork of the random
streams (``probe_model``), so reading it never shifts a seeded stage's draws."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import torch

from .registry import probe_model


@dataclass(frozen=True)
class Anatomy:
    """An architecture as built for one input shape and class count."""

    arch: str
    split_shapes: dict[str, tuple[int, ...]]  # split point -> feature shape (no batch dim), in split order
    default_split: str
    nonnegative: dict[str, bool]  # split point -> whether the front up to it ends >= 0 (a ReLU last)
    kinds: frozenset[type]  # the module classes the network is made of

    def split_of(self, split: str | None) -> str:
        return split or self.default_split

    def front_shape(self, split: str | None = None) -> tuple[int, ...]:
        return self.split_shapes[self.split_of(split)]


def anatomy_of(
    arch: str, image_shape: tuple[int, ...], num_classes: int, kwargs: dict | None = None
) -> Anatomy:
    """The :class:`Anatomy` of ``arch`` for images of ``image_shape`` (C, H, W): one probe per arguments."""
    return _anatomy(arch, tuple(image_shape), num_classes, json.dumps(kwargs or {}, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _anatomy(arch: str, image_shape: tuple[int, ...], num_classes: int, kwargs: str) -> Anatomy:
    model = probe_model(arch, image_shape[0], num_classes, image_shape[-1], **json.loads(kwargs))
    model.eval()
    noise = torch.randn(8, *image_shape, generator=torch.Generator().manual_seed(0)) * 3
    shapes, nonnegative = {}, {}
    with torch.no_grad():
        for split in model.split_points:
            front = model.front(noise, split)
            shapes[split] = tuple(front.shape[1:])
            nonnegative[split] = bool((front >= 0).all())
    kinds = frozenset(type(m) for m in model.modules())
    return Anatomy(arch, shapes, model.default_split, nonnegative, kinds)


cache_clear = _anatomy.cache_clear  # a test that starts from a machine's first run empties it
