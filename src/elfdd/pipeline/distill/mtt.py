"""MTT: matching training trajectories (Cazenavette et al. 2022) with a learnable learning rate."""

from __future__ import annotations

import torch
from torch.func import functional_call
from torch.nn import functional as F

from .. import augment
from ..training import autocast
from .base import Distillation, random_net


def unflatten(model: torch.nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """A flat parameter vector (``net.parameters()`` order) as the name -> tensor dict functional_call takes."""
    out, start = {}, 0
    for name, p in model.named_parameters():
        out[name] = flat[start : start + p.numel()].view_as(p)
        start += p.numel()
    return out


def trajectory_loss(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    start: torch.Tensor,
    target: torch.Tensor,
    syn_lr: torch.Tensor,
    steps: int,
    batch: int,
    dsa: bool,
    generator: torch.Generator,
    device: torch.device,
    precision: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unroll ``steps`` SGD steps (lr ``syn_lr``) from the expert's ``start`` on synthetic minibatches; return the
    normalised distance ||theta_N - target||^2 / ||start - target||^2 and the last augmented batch with its labels."""
    theta = start.clone().requires_grad_(True)
    x, y = images, labels
    for _ in range(steps):
        order = torch.randperm(len(images), generator=generator)[:batch]
        x, y = images[order], labels[order]
        if dsa:
            x = augment.augment(x, generator)[0]
        with autocast(device, precision):
            loss = F.cross_entropy(functional_call(model, unflatten(model, theta), (x,)).float(), y)
        (grad,) = torch.autograd.grad(loss, theta, create_graph=True)
        theta = theta - syn_lr * grad
    distance = ((theta - target) ** 2).sum() / ((start - target) ** 2).sum()
    return distance, x, y


def distill_mtt(
    job: Distillation,
    trajectories: list[torch.Tensor],
    syn_lr: torch.Tensor,
) -> dict:
    """Each iteration: a random expert and start epoch t < T+, N unrolled steps from theta*_t on the synthetic set,
    matched to theta*_{t+M}; the images and the learnable lr are updated."""
    data, cfg, images, labels = job.data, job.cfg, job.images, job.labels
    update, generator, device, precision = job.update, job.generator, job.device, job.precision
    mtt = cfg.mtt
    model = random_net(cfg, data, device)
    for p in model.parameters():
        p.requires_grad_(False)  # the unrolled parameters live in theta, not in the module
    labels = labels.to(device)
    epochs = len(trajectories[0]) - 1
    max_start = min(mtt.max_start_epoch, epochs - mtt.expert_steps)
    batch = mtt.batch_syn or len(images)
    for iteration in job.iterations():
        expert = trajectories[int(torch.randint(len(trajectories), (1,), generator=generator))]
        t = int(torch.randint(max_start + 1, (1,), generator=generator))
        start, target = expert[t].to(device), expert[t + mtt.expert_steps].to(device)
        loss, last_x, last_y = trajectory_loss(
            model,
            images,
            labels,
            start,
            target,
            syn_lr,
            mtt.syn_steps,
            batch,
            cfg.dsa,
            generator,
            device,
            precision,
        )
        with torch.no_grad():
            model_params = unflatten(model, start)
            for name, p in model.named_parameters():
                p.copy_(model_params[name])
        update.step(loss, iteration, (last_x, last_y, model))  # the MetaDD backbone: the net at theta*_t
        with torch.no_grad():
            syn_lr.clamp_(min=1e-6)
    return {"syn_lr": float(syn_lr.detach()), "syn_steps": mtt.syn_steps, "expert_steps": mtt.expert_steps}
