"""Evaluating a synthetic set the standard way: train a network from scratch on it, test on the real test split."""

from __future__ import annotations

import torch

from ..models import create_model
from .data import DataSplits
from .teacher import train_epoch
from .training import evaluate, seed_everything, sgd_with_half_decay


def evaluate_synthetic(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: DataSplits,
    arch: str,
    epochs: int,
    seed: int,
    device: torch.device,
    precision: str,
    lr: float = 0.01,
    dsa: bool = True,
) -> float:
    """Test accuracy of ``arch`` trained ``epochs`` epochs on the set (SGD momentum 0.9, wd 5e-4, lr x0.1 at half,
    batch 256, DSA): the DC/DSA/DM evaluation protocol."""
    generator = seed_everything(seed)
    model = create_model(arch, data.image_shape[0], data.num_classes, data.image_shape[-1]).to(device)
    optimizer, scheduler = sgd_with_half_decay(model.parameters(), lr, 0.9, 5e-4, epochs)
    for _ in range(epochs):
        train_epoch(model, optimizer, images, labels, 256, dsa, generator, device, precision)
        scheduler.step()
    return evaluate(model, data.x_test, data.y_test, device, precision)
