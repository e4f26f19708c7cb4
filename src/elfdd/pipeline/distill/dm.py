"""DM: distribution matching with randomly initialised networks (Zhao & Bilen 2023)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...models import SplitNet
from .. import augment
from ..data import DataSplits
from ..training import autocast, forward_in_chunks
from .base import Distillation, class_indices, random_net, real_batch

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import DistillConfig


def dm_loss(
    data: DataSplits,
    cfg: DistillConfig,
    images: torch.Tensor,
    net: SplitNet,
    index: list[torch.Tensor],
    generator: torch.Generator,
    device: torch.device,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DM's objective under one network: sum over classes of the squared distance between the mean embeddings of
    real and synthetic images (Siamese DSA); returns it and the augmented synthetic batch."""
    size = data.image_shape[-1]
    real, real_params, syn_params = [], [], []
    for rows in index:
        take, p_real, p_syn = real_batch(rows, cfg, size, generator)
        real.append(data.x_train[take])
        real_params.append(p_real)
        syn_params.append(p_syn)
    syn_x = augment.apply(images, torch.cat(syn_params))
    with torch.no_grad(), autocast(device, precision):  # only the synthetic pixels get gradients
        real_x = augment.apply(torch.cat(real).to(device), torch.cat(real_params))
        real_embed = forward_in_chunks(lambda x: net.front(x).flatten(1).float(), real_x, net, device)
        real_means = torch.stack([chunk.mean(0) for chunk in real_embed.split([len(r) for r in real])])
    with autocast(device, precision):
        syn_embed = net.front(syn_x).flatten(1).float()
    syn_means = syn_embed.view(data.num_classes, cfg.ipc, -1).mean(1)
    return ((real_means - syn_means) ** 2).sum(), syn_x


def frozen_random_net(cfg: DistillConfig, data: DataSplits, device: torch.device) -> SplitNet:
    net = random_net(cfg, data, device).train()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def distill_dm(
    job: Distillation,
) -> dict:
    """Match per-class mean embeddings of real and synthetic images under a fresh random network each iteration."""
    data, cfg, images, labels = job.data, job.cfg, job.images, job.labels
    update, generator, device, precision = job.update, job.generator, job.device, job.precision
    index = class_indices(data)
    labels = labels.to(device)
    for iteration in job.iterations():
        net = frozen_random_net(cfg, data, device)
        loss, syn_x = dm_loss(data, cfg, images, net, index, generator, device, precision)
        update.step(loss, iteration, (syn_x, labels, net))
    return {}
