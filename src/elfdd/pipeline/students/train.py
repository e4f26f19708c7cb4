"""Training student cells: each cell's setup (its student built from its seed, its adapters, its store reader), its
loss terms, the one epoch loop that trains a single cell or a batched group (batched.py) alike, and the record it
writes (``students/<cell>.json`` and each entry of results.json's ``runs``: one typed schema, written here and
validated where the report and ``elfdd verify`` read it; docs/design.md, results.json)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn
from torch.nn import functional as F

from ...core.errors import BadInput, StudentDiverged
from ...core.io import load_json
from ...models import (
    SplitNet,
    adapter_pair,
    anatomy_of,
    create_model,
    forward_with_features,
    running_stats_frozen,
)
from ...store.reader import FeatureDataset
from ...store.stream import ChunkShuffleSampler, feature_loader
from .. import augment
from ..config import StudentsConfig
from ..losses import LOSS_TERMS, feature_loss, logit_loss, result_mode
from ..training import (
    NonFiniteWatch,
    Progress,
    autocast,
    evaluate,
    log,
    seed_everything,
    sgd_with_half_decay,
)
from .grid import Cell
from .pairing import StudentPlan


def student_view(
    images: torch.Tensor, view_params: torch.Tensor, policy: str, dsa: bool, generator: torch.Generator
) -> torch.Tensor:
    """The images a student trains on. Replay: exactly the augmentation of the view whose teacher feature came with
    the batch. Clean (the reference) and online: fresh DSA when ``dsa`` (clean: while the feature is of the
    un-augmented image; online: the teacher then sees this very batch)."""
    if policy == "replay":
        return augment.apply(images, view_params)
    if dsa:
        return augment.augment(images, generator)[0]
    return images


@torch.no_grad()
def online_outputs(teacher: nn.Module, images: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's feature at ``layer`` and its logits of exactly this batch (view policy online), in fp32 like
    the stored ones."""
    teacher.eval()
    logits, features = forward_with_features(teacher, images.float(), [layer])
    return features[layer].float(), logits.float()


def elf_losses(
    model: SplitNet,
    adapters: nn.ModuleDict | None,
    cell: Cell,
    images: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    lambdas: tuple[Any, Any],
    rear_bn_stats: str,
    soft_labels: tuple[torch.Tensor, float, float] | None = None,
) -> dict[str, torch.Tensor]:
    """The loss terms of ``cell.loss_mode`` for one batch (each already weighted by its lambda), on the batch's device:
    task = CE(rear(front(x)), y), front = feature loss(front(x), teacher feature), rear = CE(rear(teacher feature), y).
    Soft labels (B, classes) make both CEs soft-target cross-entropy (F.cross_entropy with class probabilities).
    ``lambdas``: (lambda_front, lambda_rear) as the cell trains with them (its front scale applied: setup_cell;
    a batched group passes each cell's as tensors); ``rear_bn_stats`` "front": the rear term's pass leaves batch-norm
    running statistics alone; ``soft_labels`` (the teacher's logits of these views, the term's temperature and
    weight): logit = weight * logit_loss(rear(front(x)), teacher logits), for the modes with the soft-label term.
    Every setting comes from the caller: no second rule lives here."""
    terms = LOSS_TERMS[cell.loss_mode]
    lambda_front, lambda_rear = lambdas
    split = cell.split or model.default_split
    h = model.front(images, split)
    student_logits = model.rear(h, split)
    losses = {"task": F.cross_entropy(student_logits.float(), labels)}
    if "front" in terms:  # a feature cell: the grid gives it adapters, a feature loss and its lambdas
        assert adapters is not None and cell.feature_loss is not None and lambda_front is not None
        losses["front"] = lambda_front * feature_loss(
            cell.feature_loss, adapters["to_teacher"](h).float(), teacher, temperature
        )
    if "rear" in terms:
        assert adapters is not None and lambda_rear is not None
        frozen = running_stats_frozen(model) if rear_bn_stats == "front" else contextlib.nullcontext()
        with frozen:
            logits = model.rear(adapters["from_teacher"](teacher), split)
        losses["rear"] = lambda_rear * F.cross_entropy(logits.float(), labels)
    if "logit" in terms:
        assert soft_labels is not None  # a soft-label cell: its setup reads the teacher's logits
        teacher_logits, logit_temperature, lambda_logit = soft_labels
        losses["logit"] = lambda_logit * logit_loss(student_logits, teacher_logits, logit_temperature)
    return {t: losses[t] for t in terms}


@dataclass(frozen=True)
class StudentContext:
    """What every student cell of a stage trains and is tested with: the test split, the students config, the
    number of classes, the device and the precision."""

    x_test: torch.Tensor
    y_test: torch.Tensor
    cfg: StudentsConfig
    num_classes: int
    device: torch.device
    precision: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])


@dataclass
class CellSetup:
    """One cell ready to train: its student and adapters (initialised from the cell's seed), their parameters, the
    optimiser's learning rate, the batches it reads and the generator of its augmentation."""

    cell: Cell
    dataset: FeatureDataset
    model: SplitNet
    adapters: nn.ModuleDict | None
    split: str
    front_scale: float  # lambda_front's factor (pairing.StudentPlan.front_scale)
    rear_relu: bool | None
    lr: float
    policy: str
    views: int
    sampler: ChunkShuffleSampler
    batches: Any
    generator: torch.Generator
    online_teacher: nn.Module | None

    @property
    def lambdas(self) -> tuple[float | None, float | None]:
        """(lambda_front, lambda_rear) the cell's losses are weighted with."""
        front = self.cell.lambda_front
        return (None if front is None else front * self.front_scale), self.cell.lambda_rear

    @property
    def parameters(self) -> list[nn.Parameter]:
        adapters = list(self.adapters.parameters()) if self.adapters is not None else []
        return [*self.model.parameters(), *adapters]

    def batch(self, raw, dsa: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(images, teacher feature, labels, teacher logits) of one step: ``raw`` from the store, on ``device``, in
        the cell's view; the logits are (B, 0) for a cell without the soft-label term."""
        images, teacher, labels, view_params, *stored = raw
        images, labels, teacher = images.to(device), labels.to(device), teacher.to(device)
        logits = stored[0].to(device) if stored else torch.zeros(len(images), 0, device=device)
        images = student_view(images, view_params, self.policy, dsa, self.generator)
        if self.online_teacher is not None:
            teacher, online_logits = online_outputs(self.online_teacher, images, self.dataset.layer)
            logits = online_logits if self.cell.uses_logits else logits
        return images, teacher, labels, logits


def setup_cell(
    cell: Cell,
    dataset: FeatureDataset,
    ctx: StudentContext,
    online_teacher: nn.Module | None = None,
    plan: StudentPlan | None = None,
) -> CellSetup:
    """Seed the cell, build its student (and adapters where it reads features: their shapes, the front scale and
    whether the front ends non-negative come from ``plan``, its row of the pairing table; default: the
    architecture's anatomy for the context's images) and its store reader. View policy online needs
    ``online_teacher`` (the checkpoint the cell's features come from)."""
    cfg, device, image_shape = ctx.cfg, ctx.device, ctx.image_shape
    plan = plan or StudentPlan(
        anatomy_of(cell.student, image_shape, ctx.num_classes, cfg.arch_kwargs.get(cell.student, {})), {}
    )
    generator = seed_everything(cell.seed)
    model = create_model(
        cell.student,
        image_shape[0],
        ctx.num_classes,
        image_shape[-1],
        **cfg.arch_kwargs.get(cell.student, {}),
    ).to(device)
    split = plan.anatomy.split_of(cell.split)
    adapters, rear_relu, front_scale = None, None, 1.0
    if cell.uses_features:
        rear_relu = cfg.rear_path == "match_front" and plan.anatomy.nonnegative[split]
        adapters = adapter_pair(plan.anatomy.front_shape(split), dataset.feature_shape, rear_relu).to(device)
        front_scale = plan.front_scale(split, cfg)
    policy = cell.view_policy or "clean"
    replay = policy == "replay"
    if policy == "online" and cell.uses_features and online_teacher is None:
        raise BadInput(f"student {cell.name}: view policy online needs the teacher checkpoint")
    if replay and dataset.views < 2:
        raise BadInput(
            f"store {dataset.path} holds 1 view per image; view_policy replay needs extract.views >= 2"
        )
    views = min(dataset.views, cfg.max_views or dataset.views) if replay else 1
    sampler = ChunkShuffleSampler(
        len(dataset),
        dataset.chunk,
        cfg.batch_size,
        seed=cell.seed,
        views=views,
        window_chunks=max(1, (cfg.cache_mb << 20) // max(1, dataset.chunk_bytes)),
    )
    return CellSetup(
        cell,
        dataset,
        model,
        adapters,
        split,
        front_scale,
        rear_relu,
        cfg.lr_for(cell.student),
        policy,
        views,
        sampler,
        feature_loader(dataset, sampler, cfg.loader_workers),
        generator,
        online_teacher if policy == "online" and cell.uses_features else None,
    )


class Steps(Protocol):
    """How the cells of one loop compute a step: their parameters (what the optimiser updates), their loss terms for
    one batch each, stacked (cells, terms), their gradient clipping, and what is left to do once trained."""

    params: list[torch.Tensor]

    def losses(self, batches: list[tuple[torch.Tensor, ...]]) -> torch.Tensor: ...

    def clip(self, max_norm: float) -> None: ...

    def finish(self) -> None: ...


def soft_labels(
    cell: Cell, logits: torch.Tensor, cfg: StudentsConfig
) -> tuple[torch.Tensor, float, float] | None:
    """elf_losses' ``soft_labels`` for ``cell``: the teacher's logits with the config's temperature and weight."""
    return (logits, cfg.logit_temperature, cfg.lambda_logit) if cell.uses_logits else None


class OneCell:
    """The steps of a cell trained alone: its own model's loss terms, ``clip_grad_norm_``."""

    def __init__(self, setup: CellSetup, cfg: StudentsConfig):
        self.setup, self.cfg = setup, cfg
        self.params: list[torch.Tensor] = list(setup.parameters)
        self.terms = LOSS_TERMS[setup.cell.loss_mode]
        setup.model.train()
        # students.compile: the step's forward and loss terms as one compiled graph
        backend = cfg.compile_for(setup.cell.student)
        self.step = self.step_losses if backend is None else torch.compile(self.step_losses, backend=backend)

    def losses(self, batches: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        return self.step(*batches[0])

    def step_losses(
        self, images: torch.Tensor, teacher: Any, labels: torch.Tensor, logits: Any
    ) -> torch.Tensor:
        losses = elf_losses(
            self.setup.model,
            self.setup.adapters,
            self.setup.cell,
            images,
            teacher,
            labels,
            temperature=self.cfg.feature_temperature,
            lambdas=self.setup.lambdas,
            rear_bn_stats=self.cfg.rear_bn_stats,
            soft_labels=soft_labels(self.setup.cell, logits, self.cfg),
        )
        return torch.stack([losses[t] for t in self.terms])[None]

    def clip(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, max_norm)

    def finish(self) -> None:
        """Nothing: the cell's model was trained in place."""


def train_cells(setups: list[CellSetup], ctx: StudentContext, steps: Steps) -> list[dict[str, Any]]:
    """The epoch loop: train the cells of ``setups`` (one alone, or one batched group) with ``steps`` and return each
    cell's record. A NaN/Inf loss term ends a cell: with ``on_diverge: fail`` it raises :class:`StudentDiverged`,
    otherwise its record says ``status: diverged`` with the epoch and term (and no test accuracy); the other cells of
    a group train on (its NaN stays in its own slice of the stack)."""
    cfg, device = ctx.cfg, ctx.device
    terms = LOSS_TERMS[setups[0].cell.loss_mode]
    optimizer, scheduler = sgd_with_half_decay(
        steps.params, setups[0].lr, cfg.momentum, cfg.weight_decay, cfg.epochs
    )
    watches = [NonFiniteWatch(terms, device) for _ in setups]
    progress = [Progress(f"student {setup.cell.name}", cfg.epochs) for setup in setups]
    diverged: list[tuple[str, int, float] | None] = [None] * len(setups)
    curves: list[list[dict[str, float]]] = [[] for _ in setups]
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        for setup in setups:
            setup.sampler.set_epoch(epoch)
        for raws in zip(*(setup.batches for setup in setups), strict=True):
            batches = [setup.batch(raw, cfg.dsa, device) for setup, raw in zip(setups, raws, strict=True)]
            with autocast(device, ctx.precision):
                losses = steps.losses(batches)
            for k, watch in enumerate(watches):  # on the device; read back only at the checks below
                watch.update(dict(zip(terms, losses[k], strict=True)), epoch)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if cfg.grad_clip is not None:
                steps.clip(cfg.grad_clip)
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
    train_seconds = (time.perf_counter() - started) / len(setups)
    steps.finish()
    return [
        cell_record(setup, ctx, d, curve, train_seconds, len(setups))
        for setup, d, curve in zip(setups, diverged, curves, strict=True)
    ]


def train_cell(
    cell: Cell,
    dataset: FeatureDataset,
    ctx: StudentContext,
    online_teacher: nn.Module | None = None,
    plan: StudentPlan | None = None,
) -> dict[str, Any]:
    """Train one cell alone on the synthetic set and return its record. View policy online needs ``online_teacher``
    (the checkpoint the cell's features come from), run on every augmented batch; ``plan`` as in
    :func:`setup_cell`."""
    setup = setup_cell(cell, dataset, ctx, online_teacher, plan)
    return train_cells([setup], ctx, OneCell(setup, ctx.cfg))[0]


def curve_text(point: dict[str, float]) -> str:
    """A loss-curve point as the progress line shows it (``front 1.234 rear 0.567 task 0.890``)."""
    return " ".join(f"{t} {v:.3f}" for t, v in point.items() if t != "epoch")


def cell_record(
    setup: CellSetup,
    ctx: StudentContext,
    diverged: tuple[str, int, float] | None,
    curve: list[dict[str, float]],
    train_seconds: float,
    group_size: int = 1,
) -> dict[str, Any]:
    """The cell's record: its test accuracy (None where it diverged; ``cfg.on_diverge == "fail"`` raises instead)
    and what it trained with. ``curve``: the last step's loss terms at each logged epoch. ``group_size``: the cells
    it was trained with as one batched model (itself included)."""
    cell, cfg, dataset = setup.cell, ctx.cfg, setup.dataset
    if diverged is not None:
        term, at_epoch, value = diverged
        if cfg.on_diverge == "fail":
            raise StudentDiverged(cell.name, term, at_epoch, value)
        log.warning("student %s diverged: loss term %s is %s at epoch %d", cell.name, term, value, at_epoch)
    test_acc = None if diverged else evaluate(setup.model, ctx.x_test, ctx.y_test, ctx.device, ctx.precision)
    with_features = cell.uses_features
    record = {
        "cell": cell.name,
        "student": cell.student,
        "mode": result_mode(cell.loss_mode),
        "status": "diverged" if diverged else "ok",
        "diverged": {"term": diverged[0], "epoch": diverged[1], "value": str(diverged[2])}
        if diverged
        else None,
        "loss": {
            "mode": cell.loss_mode,
            "feature_loss": cell.feature_loss,
            "lambda_front": cell.lambda_front,
            "lambda_rear": cell.lambda_rear,
        },
        "teacher_id": dataset.teacher_id if with_features else None,
        "teacher_epoch": dataset.epoch if with_features else None,
        "layer": dataset.layer if with_features else None,
        "view_policy": setup.policy if with_features else None,
        "views": setup.views if with_features else None,
        "student_split": setup.split,
        "adapted": not setup.adapters["to_teacher"].is_identity if with_features and setup.adapters else None,
        "front_scale": setup.front_scale if with_features else None,
        "rear_relu": setup.rear_relu,
        "seed": cell.seed,
        "epochs": cfg.epochs,
        "lr": setup.lr,
        "test_acc": test_acc,
        "train_seconds": round(train_seconds, 3),
        "group_size": group_size,
        "loss_curve": curve,
        "axes": asdict(cell),
    }
    return CellRecord.model_validate(record).model_dump(mode="json")


class Diverged(BaseModel):
    """The first non-finite loss term of a cell that diverged (``students.on_diverge: record``)."""

    term: str
    epoch: int
    value: str


class CellLoss(BaseModel):
    mode: str
    feature_loss: str | None = None
    lambda_front: float | None = None
    lambda_rear: float | None = None


class CellRecord(BaseModel):
    """One trained cell. Feature fields (teacher_id ... rear_relu) are None for a baseline; ``test_acc`` is None for
    a cell that diverged."""

    model_config = ConfigDict(
        extra="allow"
    )  # the student stage adds its ``axes`` (the grid cell) and ``cache_key``

    cell: str
    student: str
    mode: str  # "baseline" (loss mode task), "elf" (front_rear_task), else the loss mode
    loss: CellLoss | None = None
    teacher_id: str | None = None
    teacher_epoch: int | None = None
    layer: str | None = None
    view_policy: str | None = None
    views: int | None = None
    student_split: str | None = None
    adapted: bool | None = None
    front_scale: float | None = None  # lambda_front's factor (students.vector_front_scale for a vector front)
    rear_relu: bool | None = None
    seed: int
    epochs: int
    lr: float
    status: Literal["ok", "diverged"] = "ok"
    diverged: Diverged | None = None
    test_acc: float | None
    train_seconds: float  # a batched group's training time shared evenly among its cells
    # the last step's loss terms (each weighted by its lambda) at every logged epoch: [{epoch, task, front, ...}]
    loss_curve: list[dict[str, int | float]] = []
    group_size: int = 1  # the cells trained together as one batched model (batched.py), itself included
    cache_key: str | None = None


RUN_KEYS = tuple(CellRecord.model_fields)  # the fields of results.json's runs, in this order


def outcome(record: dict[str, Any], digits: int = 1) -> str:
    """A finished cell's test accuracy as the terminal says it (``81.2 %``), or ``diverged``."""
    accuracy = record["test_acc"]
    return "diverged" if accuracy is None else f"{100 * accuracy:.{digits}f} %"


def read_record(path: Path) -> dict[str, Any]:
    """A cell's record file, validated (bad input names the file and the field)."""
    raw = load_json(path, "student run")
    try:
        return CellRecord.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise BadInput(f"student run {path}: {where}: {error['msg']}") from None
