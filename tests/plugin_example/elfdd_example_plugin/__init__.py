"""Registers ``example_mlp`` (an architecture), ``example_stripes`` (a dataset) and ``example_txt`` (a set format)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn


def build_example_mlp(in_channels: int, num_classes: int, image_size: int, width: int = 32):
    from elfdd.models import SplitNet

    stages = OrderedDict(
        flatten=nn.Flatten(),
        hidden=nn.Sequential(nn.Linear(in_channels * image_size * image_size, width), nn.ReLU()),
        head=nn.Linear(width, num_classes),
    )
    return SplitNet(stages, split_points=("hidden",), default_split="hidden")


def load_stripes(cfg) -> dict[str, np.ndarray]:
    """Four classes of 16x16 grey images: a bright horizontal band whose row tells the class, plus noise."""
    rng = np.random.default_rng(0)

    def split(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(4), per_class)
        images = rng.integers(0, 60, size=(len(labels), 16, 16), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 * label : 4 * label + 4] = 220
        return images, labels

    x_train, y_train = split(40)
    x_test, y_test = split(10)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def read_txt(paths: list[Path], options: dict):
    """A set as text: one image per line, its label then its pixels in [0, 1] (square images, one channel)."""
    from elfdd.pipeline.formats import RawSet

    rows = [list(map(float, line.split())) for line in paths[0].read_text().splitlines() if line.strip()]
    labels = torch.tensor([int(r[0]) for r in rows])
    pixels = torch.tensor([r[1:] for r in rows])
    side = int(len(rows[0][1:]) ** 0.5)
    return RawSet(pixels.reshape(len(rows), 1, side, side), labels, "pixel", paths)


def register() -> None:
    from elfdd.models import register_model
    from elfdd.pipeline.data import register_dataset
    from elfdd.pipeline.formats import Format, register_format

    register_model("example_mlp", build_example_mlp)
    register_dataset("example_stripes", load_stripes)
    register_format("example_txt", Format(read_txt, lambda path: path.suffix == ".txt"))
