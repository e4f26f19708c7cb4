"""DM: distribution matching with randomly initialised networks (Zhao & Bilen 2023)."""

from __future__ import annotations

import torch

from ..models import create_model
from . import augment
from .config import DistillConfig
from .data import DataSplits
from .synthetic import SyntheticSet
from .training import Progress, autocast, seed_everything


def initial_images(
    data: DataSplits, ipc: int, init: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` images per class: random real ones (``real``) or Gaussian noise (``noise``)."""
    images, labels = [], []
    for c in range(data.num_classes):
        index = (data.y_train == c).nonzero().squeeze(1)
        if len(index) < ipc:
            from .errors import BadInput

            raise BadInput(f"class {c} has {len(index)} training images, fewer than distill.ipc={ipc}")
        chosen = index[torch.randperm(len(index), generator=generator)[:ipc]]
        images.append(
            data.x_train[chosen]
            if init == "real"
            else torch.randn((ipc, *data.image_shape), generator=generator)
        )
        labels.append(torch.full((ipc,), c, dtype=torch.long))
    return torch.cat(images).clone(), torch.cat(labels)


def distill_dm(
    data: DataSplits, cfg: DistillConfig, device: torch.device, precision: str, seed: int
) -> SyntheticSet:
    """Match per-class mean embeddings of real and synthetic images under fresh random networks."""
    generator = seed_everything(seed)
    init_images, labels = initial_images(data, cfg.ipc, cfg.init, generator)
    images = init_images.to(device).requires_grad_(True)
    optimizer = torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum)
    class_index = [(data.y_train == c).nonzero().squeeze(1) for c in range(data.num_classes)]
    channels, size = data.image_shape[0], data.image_shape[-1]
    progress = Progress("distill dm", cfg.iterations)
    for iteration in range(1, cfg.iterations + 1):
        net = create_model(cfg.arch, channels, data.num_classes, size, **cfg.arch_kwargs).to(device)
        net.train()
        for p in net.parameters():
            p.requires_grad_(False)
        real, real_params, syn_params = [], [], []
        for index in class_index:
            take = index[torch.randperm(len(index), generator=generator)[: cfg.batch_real]]
            real.append(data.x_train[take])
            # Siamese DSA: the real and synthetic images of a class share the op and the per-row parameters.
            p_real, p_syn = augment.siamese_params(len(take), cfg.ipc, size, generator)
            if not cfg.dsa:
                p_real, p_syn = p_real.zero_(), p_syn.zero_()
            real_params.append(p_real)
            syn_params.append(p_syn)
        syn_x = augment.apply(images, torch.cat(syn_params))
        with torch.no_grad(), autocast(device, precision):  # only the synthetic pixels get gradients
            real_embed = (
                net.front(augment.apply(torch.cat(real).to(device), torch.cat(real_params)))
                .flatten(1)
                .float()
            )
            real_means = torch.stack([chunk.mean(0) for chunk in real_embed.split([len(r) for r in real])])
        with autocast(device, precision):
            syn_embed = net.front(syn_x).flatten(1).float()
        syn_means = syn_embed.view(data.num_classes, cfg.ipc, -1).mean(1)
        loss = ((real_means - syn_means) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress(iteration, f"loss {loss.item():.2f}")
    return SyntheticSet(
        images=images.detach().cpu(),
        labels=labels,
        method=cfg.method,
        ipc=cfg.ipc,
        dataset=data.name,
        num_classes=data.num_classes,
        normalization=data.normalization(),
        extra={"iterations": cfg.iterations, "arch": cfg.arch, "init": cfg.init, "seed": seed},
    )
