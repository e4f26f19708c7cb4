"""Many student cells as one batched model: cells of one architecture that differ in seed, lambda, teacher epoch or
view policy, each with its own parameters, optimiser state, data order and augmentation, stacked with
``torch.func.stack_module_state`` and trained by one vmapped ``functional_call`` per step. The update is exactly the
per-model SGD of the sequential path (SGD, momentum and weight decay are element-wise; the gradient norm is clipped
per cell), so each cell's record is the one it would have had alone, up to float rounding."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..store.reader import FeatureDataset
from .jobs import StudentJob
from .losses import LOSS_TERMS
from .students import StudentContext, StudentSetup, curve_text, elf_losses, finish_student, setup_student
from .training import NonFiniteWatch, Progress, autocast, sgd_with_half_decay

# Where ``students.batching: auto`` batches, per device type (None: every batchable architecture): only where
# bench/perf.py measured batched over sequential below 1 (docs/benchmarks.md, "Batched cells": on the CPU a vmapped
# convolution runs as a grouped one, so only the MLP's matrix products gain). A GPU batches only with
# ``students.batching: true`` until one is measured.
BATCHED_BY_DEFAULT: dict[str, tuple[str, ...] | None] = {"cpu": ("mlp",), "cuda": ()}


SAMPLE_MIXING = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def batchable(kinds: frozenset[type]) -> bool:
    """Whether cells of an architecture made of the module classes ``kinds`` (models.module_kinds) can be trained
    as one batched model."""
    return not any(issubclass(kind, SAMPLE_MIXING) for kind in kinds)


def group_key(job: StudentJob) -> tuple:
    """Cells with equal keys have the same parameter shapes and loss terms, so they can share one batched model."""
    return (job.student, job.loss_mode, job.feature_loss, job.teacher, job.layer, job.split)


def batches_by_default(arch: str, device: torch.device) -> bool:
    archs = BATCHED_BY_DEFAULT.get(device.type, ())
    return archs is None or arch in archs


class _CellLosses(nn.Module):
    """One cell's loss terms as a module, so that ``functional_call`` can run it with any cell's parameters."""

    def __init__(self, cell: StudentSetup, temperature: float, rear_bn_stats: str):
        super().__init__()
        self.model, self.adapters = cell.model, cell.adapters
        self.job, self.temperature, self.rear_bn_stats = cell.job, temperature, rear_bn_stats
        self.terms = LOSS_TERMS[cell.job.loss_mode]

    def forward(self, images, teacher, labels, lambdas) -> torch.Tensor:
        losses = elf_losses(
            self.model,
            self.adapters,
            self.job,
            images,
            teacher,
            labels,
            temperature=self.temperature,
            lambdas=(lambdas[0], lambdas[1]),
            rear_bn_stats=self.rear_bn_stats,
        )
        return torch.stack([losses[t] for t in self.terms])


def clip_per_cell(params: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` of each cell's own gradient (dim 0 of every stacked parameter is the cell)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([g.detach().flatten(1).float().norm(dim=1) for g in grads], 1).norm(dim=1)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))


def train_student_group(
    jobs: list[StudentJob],
    datasets: list[FeatureDataset],
    ctx: StudentContext,
    online_teachers: list[nn.Module | None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``jobs`` (one :func:`group_key`, ``datasets[i]`` the store reader of ``jobs[i]``) as one batched model
    and return each cell's record, as :func:`train_student` would. A cell that diverges is recorded as diverged
    (its NaN stays in its own slice of the stack) while the others train on."""
    if len({group_key(j) for j in jobs}) != 1:
        raise ValueError(f"cells of one batched group differ in more than seed/lambda/epoch/view: {jobs}")
    cfg, device = ctx.cfg, ctx.device
    online_teachers = online_teachers or [None] * len(jobs)
    cells = [
        setup_student(job, data, ctx, teacher)
        for job, data, teacher in zip(jobs, datasets, online_teachers, strict=True)
    ]
    modules = [_CellLosses(cell, cfg.feature_temperature, cfg.rear_bn_stats).train() for cell in cells]
    params, buffers = stack_module_state(modules)
    params = {name: p.detach().requires_grad_() for name, p in params.items()}
    base = copy.deepcopy(modules[0]).to("meta")
    lambdas = torch.tensor([[lam or 0.0 for lam in cell.lambdas] for cell in cells], device=device)

    def cell_losses(p, b, images, teacher, labels, lam):
        return functional_call(base, (p, b), (images, teacher, labels, lam))

    batched = vmap(cell_losses)
    stacked = list(params.values())
    optimizer, scheduler = sgd_with_half_decay(
        stacked, cells[0].lr, cfg.momentum, cfg.weight_decay, cfg.epochs
    )
    terms = LOSS_TERMS[jobs[0].loss_mode]
    watches = [NonFiniteWatch(terms, device) for _ in jobs]
    progress = [Progress(f"student {job.name}", cfg.epochs) for job in jobs]
    diverged: list[tuple[str, int, float] | None] = [None] * len(jobs)
    curves: list[list[dict[str, float]]] = [[] for _ in jobs]
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        for cell in cells:
            cell.sampler.set_epoch(epoch)
        for raws in zip(*(cell.batches for cell in cells), strict=True):
            steps = [
                cell.batch(raw, data.layer, cfg.dsa, device)
                for cell, raw, data in zip(cells, raws, datasets, strict=True)
            ]
            images, teacher, labels = (torch.stack(part) for part in zip(*steps, strict=True))
            with autocast(device, ctx.precision):
                losses = batched(params, buffers, images, teacher, labels, lambdas)
            for k, watch in enumerate(watches):
                watch.update(dict(zip(terms, losses[k], strict=True)), epoch)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if cfg.grad_clip is not None:
                clip_per_cell(stacked, cfg.grad_clip)
            optimizer.step()
        scheduler.step()
        if progress[0].due(epoch):
            for k, watch in enumerate(watches):
                if diverged[k] is None:
                    diverged[k] = watch.first()
                if diverged[k] is None:
                    curves[k].append(
                        {"epoch": epoch, **dict(zip(terms, losses[k].detach().tolist(), strict=True))}
                    )
                    progress[k](epoch, curve_text(curves[k][-1]))
            if all(d is not None for d in diverged):
                break
    train_seconds = (time.perf_counter() - started) / len(jobs)
    with torch.no_grad():
        for k, module in enumerate(modules):
            for name, p in module.named_parameters():
                p.copy_(params[name][k])
            for name, b in module.named_buffers():
                b.copy_(buffers[name][k])
    return [
        finish_student(cell, data, ctx, d, curve, train_seconds, len(jobs))
        for cell, data, d, curve in zip(cells, datasets, diverged, curves, strict=True)
    ]
