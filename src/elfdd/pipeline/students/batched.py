"""Many student cells as one batched model: cells of one architecture that differ in seed, lambda, teacher epoch or
view policy, each with its own parameters, optimiser state, data order and augmentation, stacked with
``torch.func.stack_module_state`` and trained by one vmapped ``functional_call`` per step. The update is exactly the
per-model SGD of a cell alone (SGD, momentum and weight decay are element-wise; the gradient norm is clipped per
cell), so each cell's record is the one it would have had alone, up to float rounding. Also: which cells of a grid
train together, and the stage that trains one such group."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ...core.io import atomic_write_json
from ...store.reader import FeatureDataset
from ..config import RunConfig, StudentsConfig
from ..losses import LOSS_TERMS
from ..run import Run
from ..training import resolve_device
from .cell import CellInputs, online_teacher
from .grid import Cell, feature_cell
from .pairing import StudentPlan, student_plan
from .train import CellSetup, StudentContext, elf_losses, setup_cell, soft_labels, train_cells

# Where ``students.batching: auto`` batches, per device type (None: every batchable architecture): only where
# bench/perf.py measured batched over sequential below 1 (docs/benchmarks.md, "Batched cells": on the CPU a vmapped
# convolution runs as a grouped one, so only the MLP's matrix products gain). A GPU batches only with
# ``students.batching: true`` until one is measured.
BATCHED_BY_DEFAULT: dict[str, tuple[str, ...] | None] = {"cpu": ("mlp",), "cuda": ()}


SAMPLE_MIXING = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def batchable(kinds: frozenset[type]) -> bool:
    """Whether cells of an architecture made of the module classes ``kinds`` (models.Anatomy.kinds) can be trained
    as one batched model."""
    return not any(issubclass(kind, SAMPLE_MIXING) for kind in kinds)


def group_key(cell: Cell) -> tuple:
    """Cells with equal keys have the same parameter shapes and loss terms, so they can share one batched model."""
    return (cell.student, cell.loss_mode, cell.feature_loss, cell.teacher, cell.layer, cell.split)


def batches_by_default(arch: str, device: torch.device) -> bool:
    archs = BATCHED_BY_DEFAULT.get(device.type, ())
    return archs is None or arch in archs


class _CellLosses(nn.Module):
    """One cell's loss terms as a module, so that ``functional_call`` can run it with any cell's parameters."""

    def __init__(self, setup: CellSetup, cfg: StudentsConfig):
        super().__init__()
        self.model, self.adapters = setup.model, setup.adapters
        self.cell, self.cfg = setup.cell, cfg
        self.terms = LOSS_TERMS[setup.cell.loss_mode]

    def forward(self, images, teacher, labels, logits, lambdas) -> torch.Tensor:
        losses = elf_losses(
            self.model,
            self.adapters,
            self.cell,
            images,
            teacher,
            labels,
            temperature=self.cfg.feature_temperature,
            lambdas=(lambdas[0], lambdas[1]),
            rear_bn_stats=self.cfg.rear_bn_stats,
            soft_labels=soft_labels(self.cell, logits, self.cfg),
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


class Stacked:
    """The steps of a batched group: every cell's parameters stacked (dim 0: the cell), one vmapped loss call per
    step, the gradient norm clipped per cell, and the trained parameters copied back into each cell's model."""

    def __init__(self, setups: list[CellSetup], cfg: StudentsConfig, device: torch.device):
        self.modules = [_CellLosses(s, cfg).train() for s in setups]
        params, self.buffers = stack_module_state(self.modules)
        self.stacked = {name: p.detach().requires_grad_() for name, p in params.items()}
        self.params = list(self.stacked.values())
        base = copy.deepcopy(self.modules[0]).to("meta")
        self.lambdas = torch.tensor([[lam or 0.0 for lam in s.lambdas] for s in setups], device=device)

        def cell_losses(p, b, images, teacher, labels, logits, lam):
            return functional_call(base, (p, b), (images, teacher, labels, logits, lam))

        self.batched = vmap(cell_losses)

    def losses(self, batches: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        images, teacher, labels, logits = (torch.stack(part) for part in zip(*batches, strict=True))
        return self.batched(self.stacked, self.buffers, images, teacher, labels, logits, self.lambdas)

    def clip(self, max_norm: float) -> None:
        clip_per_cell(self.params, max_norm)

    def finish(self) -> None:
        with torch.no_grad():
            for k, module in enumerate(self.modules):
                for name, p in module.named_parameters():
                    p.copy_(self.stacked[name][k])
                for name, b in module.named_buffers():
                    b.copy_(self.buffers[name][k])


def train_group(
    cells: list[Cell],
    datasets: list[FeatureDataset],
    ctx: StudentContext,
    online_teachers: list[nn.Module | None] | None = None,
    plans: list[StudentPlan] | None = None,
) -> list[dict[str, Any]]:
    """Train ``cells`` (one :func:`group_key`; ``datasets[i]`` the store reader of ``cells[i]``, ``plans[i]`` its
    row of the pairing table) as one batched model and return each cell's record, as each would have had alone."""
    if len({group_key(cell) for cell in cells}) != 1:
        raise ValueError(f"cells of one batched group differ in more than seed/lambda/epoch/view: {cells}")
    teachers = online_teachers or [None] * len(cells)
    rows: list[StudentPlan | None] = list(plans) if plans else [None] * len(cells)
    setups = [
        setup_cell(cell, dataset, ctx, teacher, plan)
        for cell, dataset, teacher, plan in zip(cells, datasets, teachers, rows, strict=True)
    ]
    return train_cells(setups, ctx, Stacked(setups, ctx.cfg, ctx.device))


def stage_cell_group(run: Run, cells: list[Cell], force: bool = False) -> list[Path]:
    """Train the cells of ``cells`` (one group of :func:`cell_groups`) as one batched model and write each one's
    record with its own cache key; finished cells with the same key are kept (unless ``force``), so a group killed
    before its end trains again from the start and one whose cells all finished is skipped."""
    run = run.configured()
    inputs = CellInputs(run, cells)
    stages = [inputs.stage(cell) for cell in cells]
    keyed = [(stage, stage.key(run)) for stage in stages]
    todo = [(stage, key) for stage, key in keyed if force or not stage.kept(run, key)]
    if len(todo) == 1:
        todo[0][0].build(run, todo[0][1])
    elif todo:
        todo_cells = [stage.cell for stage, _ in todo]
        records = train_group(
            todo_cells,
            [stage.dataset for stage, _ in todo],
            inputs.context(run),
            online_teachers(run, todo_cells),
            [stage.plan for stage, _ in todo],
        )
        for (stage, key), record in zip(todo, records, strict=True):
            atomic_write_json(stage.output(run), {**record, "cache_key": key})
    return [stage.output(run) for stage in stages]


def online_teachers(run: Run, cells: list[Cell]) -> list:
    """Each cell's online teacher (None where its view policy is not online), each checkpoint loaded once."""
    wheres = [feature_cell(run.config, cell) if cell.view_policy == "online" else None for cell in cells]
    loaded: dict[tuple | None, object] = {}
    for cell, where in zip(cells, wheres, strict=True):
        if where not in loaded:
            loaded[where] = online_teacher(run, cell)
    return [loaded[where] for where in wheres]


def cell_groups(config: RunConfig, cells: list[Cell]) -> list[list[Cell]]:
    """``cells`` in the groups they train in, in grid order: the cells of one :func:`group_key` (at most
    ``students.max_group``) as one batched model where ``students.batching`` allows it for their architecture, every
    other cell alone."""
    students = config.students
    device = resolve_device(config.device)
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        together = students.batching is not False and batchable(
            student_plan(config, cell.student).anatomy.kinds
        )
        if students.batching == "auto":
            together = together and batches_by_default(cell.student, device)
        key = group_key(cell) if together else ("alone", cell)
        groups.setdefault(key, []).append(cell)
    return [
        group[start : start + students.max_group]
        for group in groups.values()
        for start in range(0, len(group), students.max_group)
    ]
