"""DC/DSA: gradient matching with Siamese DSA augmentation (Zhao, Mopuri & Bilen 2021; Zhao & Bilen 2021)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from .. import augment
from ..data import DataSplits
from ..training import autocast
from .base import Distillation, class_indices, random_net, real_batch

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import DistillConfig

# Outer loop (image updates per iteration) and inner loop (network steps between them) by IPC, as the reference.
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def loops_for(cfg: DistillConfig) -> tuple[int, int]:
    default = LOOPS.get(cfg.ipc, (10, 50))
    return cfg.outer_loop or default[0], cfg.inner_loop or default[1]


def gradient_distance(syn: list[torch.Tensor], real: list[torch.Tensor], metric: str) -> torch.Tensor:
    """The reference's distances between two lists of parameter gradients. ``ours``: for every weight with more than
    one dimension (biases and norm parameters skipped), the sum over output rows of 1 - cos; ``mse``: squared
    error over all; ``cos``: 1 - cosine of the whole flattened gradient."""
    if metric == "ours":
        total = syn[0].new_zeros(())
        for gs, gr in zip(syn, real, strict=True):
            if gs.dim() < 2:
                continue
            gs, gr = gs.reshape(gs.shape[0], -1), gr.reshape(gr.shape[0], -1)
            total = total + (1 - F.cosine_similarity(gs, gr, dim=1, eps=1e-6)).sum()
        return total
    flat_s = torch.cat([g.reshape(-1) for g in syn])
    flat_r = torch.cat([g.reshape(-1) for g in real])
    if metric == "mse":
        return ((flat_s - flat_r) ** 2).sum()
    return 1 - F.cosine_similarity(flat_s, flat_r, dim=0, eps=1e-6)


def gm_loss(
    data: DataSplits,
    cfg: DistillConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    net: torch.nn.Module,
    index: list[torch.Tensor],
    generator: torch.Generator,
    device: torch.device,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient-matching objective under one network: per class, the distance between the parameter gradients
    of the loss on real and on synthetic images (Siamese DSA); returns it and the augmented synthetic batch."""
    size = data.image_shape[-1]
    params = [p for p in net.parameters() if p.requires_grad]
    loss = images.new_zeros(())
    syn_all = []
    for c, rows in enumerate(index):
        take, p_real, p_syn = real_batch(rows, cfg, size, generator)
        real_x = augment.apply(data.x_train[take].to(device), p_real)
        syn_x = augment.apply(images[c * cfg.ipc : (c + 1) * cfg.ipc], p_syn)
        syn_all.append(syn_x)
        with autocast(device, precision):
            real_loss = F.cross_entropy(net(real_x).float(), data.y_train[take].to(device))
            syn_loss = F.cross_entropy(net(syn_x).float(), labels[c * cfg.ipc : (c + 1) * cfg.ipc])
        g_real = [g.detach() for g in torch.autograd.grad(real_loss, params)]
        g_syn = torch.autograd.grad(syn_loss, params, create_graph=True)
        loss = loss + gradient_distance(list(g_syn), g_real, cfg.distance)
    return loss, torch.cat(syn_all)


def distill_gm(
    job: Distillation,
) -> dict:
    """Each iteration: a fresh network; ``outer`` times, match per class the gradients of the real and synthetic
    losses and update the images, then train the network ``inner`` steps on the (augmented) synthetic set."""
    data, cfg, images, labels = job.data, job.cfg, job.images, job.labels
    update, generator, device, precision = job.update, job.generator, job.device, job.precision
    outer, inner = loops_for(cfg)
    index = class_indices(data)
    labels = labels.to(device)
    for iteration in job.iterations():
        net = random_net(cfg, data, device).train()
        net_optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=0.5)
        for step in range(outer):
            loss, syn_x = gm_loss(data, cfg, images, labels, net, index, generator, device, precision)
            update.step(loss, iteration if step == outer - 1 else None, (syn_x, labels, net))
            if step == outer - 1:
                break
            train_on_synthetic(
                net, net_optimizer, images.detach(), labels, inner, cfg, generator, device, precision
            )
    return {"outer_loop": outer, "inner_loop": inner, "distance": cfg.distance}


def train_on_synthetic(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    cfg: DistillConfig,
    generator: torch.Generator,
    device: torch.device,
    precision: str,
) -> None:
    """``steps`` SGD steps of the network on the synthetic set (batches of 256, DSA), between image updates."""
    for _ in range(steps):
        order = torch.randperm(len(images), generator=generator)[:256]
        x = images[order]
        if cfg.dsa:
            x = augment.augment(x, generator)[0]
        with autocast(device, precision):
            loss = F.cross_entropy(net(x).float(), labels[order])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
