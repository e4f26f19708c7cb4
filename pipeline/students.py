"""ELF student training: (image, cached teacher feature, label) from the store, the student cut at its split."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import BadInput, StudentDiverged
from ..models import SplitNet, adapter_pair, create_model, forward_with_features, running_stats_frozen
from ..store.reader import FeatureDataset
from ..store.stream import ChunkShuffleSampler, feature_loader
from . import augment
from .config import StudentsConfig
from .jobs import StudentJob
from .losses import LOSS_TERMS, feature_loss, result_mode
from .records import CellRecord
from .training import (
    NonFiniteWatch,
    Progress,
    autocast,
    evaluate,
    log,
    seed_everything,
    sgd_with_half_decay,
)


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
def online_features(teacher: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """The teacher's feature at ``layer`` of exactly this batch (view policy online), in fp32 like the stored ones."""
    teacher.eval()
    return forward_with_features(teacher, images.float(), [layer])[1][layer].float()


def ends_nonnegative(model: SplitNet, image_shape: tuple[int, ...], split: str) -> bool:
    """Whether the front up to ``split`` ends in a ReLU (its output is >= 0 for any input; probed on noise)."""
    param = next(model.parameters())
    probe = torch.randn(8, *image_shape, generator=torch.Generator().manual_seed(0)).to(
        param.device, param.dtype
    )
    was_training = model.training
    model.eval()
    with torch.no_grad():
        nonnegative = bool((model.front(probe * 3, split) >= 0).all())
    model.train(was_training)
    return nonnegative


def elf_losses(
    model: SplitNet,
    adapters: nn.ModuleDict | None,
    job: StudentJob,
    images: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    lambdas: tuple[Any, Any],
    rear_bn_stats: str,
) -> dict[str, torch.Tensor]:
    """The loss terms of ``job.loss_mode`` for one batch (each already weighted by its lambda), on the batch's device:
    task = CE(rear(front(x)), y), front = feature loss(front(x), teacher feature), rear = CE(rear(teacher feature), y).
    Soft labels (B, classes) make both CEs soft-target cross-entropy (F.cross_entropy with class probabilities).
    ``lambdas``: (lambda_front, lambda_rear) as the cell trains with them (its front scale applied: setup_student;
    a batched group passes each cell's as tensors); ``rear_bn_stats`` "front": the rear term's pass leaves batch-norm
    running statistics alone. Every setting comes from the caller: no second rule lives here."""
    terms = LOSS_TERMS[job.loss_mode]
    lambda_front, lambda_rear = lambdas
    split = job.split or model.default_split
    h = model.front(images, split)
    losses = {"task": F.cross_entropy(model.rear(h, split).float(), labels)}
    if "front" in terms:  # a feature cell: the grid gives it adapters, a feature loss and its lambdas
        assert adapters is not None and job.feature_loss is not None and lambda_front is not None
        losses["front"] = lambda_front * feature_loss(
            job.feature_loss, adapters["to_teacher"](h).float(), teacher, temperature
        )
    if "rear" in terms:
        assert adapters is not None and lambda_rear is not None
        frozen = running_stats_frozen(model) if rear_bn_stats == "front" else contextlib.nullcontext()
        with frozen:
            logits = model.rear(adapters["from_teacher"](teacher), split)
        losses["rear"] = lambda_rear * F.cross_entropy(logits.float(), labels)
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
class StudentSetup:
    """One cell ready to train: its student and adapters (initialised from the cell's seed), their parameters, the
    optimiser's learning rate, the batches it reads and the generator of its augmentation."""

    job: StudentJob
    model: SplitNet
    adapters: nn.ModuleDict | None
    split: str
    front_scale: (
        float  # lambda_front's factor: students.vector_front_scale where the front ends in a vector, else 1
    )
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
        front = self.job.lambda_front
        return (None if front is None else front * self.front_scale), self.job.lambda_rear

    @property
    def parameters(self) -> list[nn.Parameter]:
        adapters = list(self.adapters.parameters()) if self.adapters is not None else []
        return [*self.model.parameters(), *adapters]

    def batch(self, raw, layer: str, dsa: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(images, teacher feature, labels) of one step: ``raw`` from the store, on ``device``, in the cell's view."""
        images, teacher, labels, view_params = raw
        images, labels, teacher = images.to(device), labels.to(device), teacher.to(device)
        images = student_view(images, view_params, self.policy, dsa, self.generator)
        if self.online_teacher is not None:
            teacher = online_features(self.online_teacher, images, layer)
        return images, teacher, labels


def front_scale_of(front_shape: tuple[int, ...], cfg: StudentsConfig) -> float:
    """The factor on lambda_front of a student whose front has ``front_shape``: ``cfg.vector_front_scale`` for a
    vector (no spatial stage, e.g. the MLP), 1 for a feature map."""
    return cfg.vector_front_scale if len(front_shape) == 1 else 1.0


def setup_student(
    job: StudentJob, dataset: FeatureDataset, ctx: StudentContext, online_teacher: nn.Module | None = None
) -> StudentSetup:
    """Seed the cell, build its student (and adapters where it reads features) and its store reader. View policy
    online needs ``online_teacher`` (the checkpoint the cell's features come from)."""
    cfg, device, image_shape = ctx.cfg, ctx.device, ctx.image_shape
    generator = seed_everything(job.seed)
    model = create_model(
        job.student, image_shape[0], ctx.num_classes, image_shape[-1], **cfg.arch_kwargs.get(job.student, {})
    ).to(device)
    split = job.split or model.default_split
    adapters, rear_relu, front_scale = None, None, 1.0
    if job.uses_features:
        rear_relu = cfg.rear_path == "match_front" and ends_nonnegative(model, image_shape, split)
        front_shape = model.feature_shape(image_shape, split)
        adapters = adapter_pair(front_shape, dataset.feature_shape, rear_relu).to(device)
        front_scale = front_scale_of(front_shape, cfg)
    policy = job.view_policy or "clean"
    replay = policy == "replay"
    if policy == "online" and job.uses_features and online_teacher is None:
        raise BadInput(f"student {job.name}: view policy online needs the teacher checkpoint")
    if replay and dataset.views < 2:
        raise BadInput(
            f"store {dataset.path} holds 1 view per image; view_policy replay needs extract.views >= 2"
        )
    views = min(dataset.views, cfg.max_views or dataset.views) if replay else 1
    sampler = ChunkShuffleSampler(
        len(dataset),
        dataset.chunk,
        cfg.batch_size,
        seed=job.seed,
        views=views,
        window_chunks=max(1, (cfg.cache_mb << 20) // max(1, dataset.chunk_bytes)),
    )
    return StudentSetup(
        job,
        model,
        adapters,
        split,
        front_scale,
        rear_relu,
        cfg.lr_for(job.student),
        policy,
        views,
        sampler,
        feature_loader(dataset, sampler, cfg.loader_workers),
        generator,
        online_teacher if policy == "online" and job.uses_features else None,
    )


def train_student(
    job: StudentJob, dataset: FeatureDataset, ctx: StudentContext, online_teacher: nn.Module | None = None
) -> dict[str, Any]:
    """Train one student on the synthetic set and return its results.json run record. View policy online needs
    ``online_teacher`` (the checkpoint the cell's features come from), run on every augmented batch.

    A NaN/Inf loss term ends the cell: with ``cfg.on_diverge == "fail"`` it raises :class:`StudentDiverged`,
    otherwise the record says ``status: diverged`` with the epoch and term (and no test accuracy)."""
    terms = LOSS_TERMS[job.loss_mode]
    cfg, device = ctx.cfg, ctx.device
    cell = setup_student(job, dataset, ctx, online_teacher)
    model, params = cell.model, cell.parameters
    optimizer, scheduler = sgd_with_half_decay(params, cell.lr, cfg.momentum, cfg.weight_decay, cfg.epochs)
    progress = Progress(f"student {job.name}", cfg.epochs)
    watch = NonFiniteWatch(terms, device)
    diverged, curve = None, []
    started = time.perf_counter()
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        cell.sampler.set_epoch(epoch)
        for raw in cell.batches:
            images, teacher, labels = cell.batch(raw, dataset.layer, cfg.dsa, device)
            with autocast(device, ctx.precision):
                losses = elf_losses(
                    model,
                    cell.adapters,
                    job,
                    images,
                    teacher,
                    labels,
                    temperature=cfg.feature_temperature,
                    lambdas=cell.lambdas,
                    rear_bn_stats=cfg.rear_bn_stats,
                )
            watch.update(losses, epoch)  # on the device; read back only at the checks below
            optimizer.zero_grad(set_to_none=True)
            cast(torch.Tensor, sum(losses.values())).backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
        scheduler.step()
        if progress.due(epoch):
            diverged = watch.first()
            if diverged is not None:
                break
            curve.append({"epoch": epoch, **{t: float(v.detach()) for t, v in losses.items()}})
            progress(epoch, curve_text(curve[-1]))
    train_seconds = time.perf_counter() - started
    return finish_student(cell, dataset, ctx, diverged, curve, train_seconds)


def curve_text(point: dict[str, float]) -> str:
    """A loss-curve point as the progress line shows it (``front 1.234 rear 0.567 task 0.890``)."""
    return " ".join(f"{t} {v:.3f}" for t, v in point.items() if t != "epoch")


def finish_student(
    cell: StudentSetup,
    dataset: FeatureDataset,
    ctx: StudentContext,
    diverged: tuple[str, int, float] | None,
    curve: list[dict[str, float]],
    train_seconds: float,
    group_size: int = 1,
) -> dict[str, Any]:
    """The cell's record: its test accuracy (None where it diverged; ``cfg.on_diverge == "fail"`` raises instead)
    and what it trained with. ``curve``: the last step's loss terms at each logged epoch. ``group_size``: the cells it was trained with as one batched model (itself included)."""
    job, cfg = cell.job, ctx.cfg
    if diverged is not None:
        term, at_epoch, value = diverged
        if cfg.on_diverge == "fail":
            raise StudentDiverged(job.name, term, at_epoch, value)
        log.warning("student %s diverged: loss term %s is %s at epoch %d", job.name, term, value, at_epoch)
    test_acc = None if diverged else evaluate(cell.model, ctx.x_test, ctx.y_test, ctx.device, ctx.precision)
    with_features = job.uses_features
    record = {
        "cell": job.name,
        "student": job.student,
        "mode": result_mode(job.loss_mode),
        "status": "diverged" if diverged else "ok",
        "diverged": {"term": diverged[0], "epoch": diverged[1], "value": str(diverged[2])}
        if diverged
        else None,
        "loss": {
            "mode": job.loss_mode,
            "feature_loss": job.feature_loss,
            "lambda_front": job.lambda_front,
            "lambda_rear": job.lambda_rear,
        },
        "teacher_id": dataset.teacher_id if with_features else None,
        "teacher_epoch": dataset.epoch if with_features else None,
        "layer": dataset.layer if with_features else None,
        "view_policy": cell.policy if with_features else None,
        "views": cell.views if with_features else None,
        "student_split": cell.split,
        "adapted": not cell.adapters["to_teacher"].is_identity if with_features and cell.adapters else None,
        "front_scale": cell.front_scale if with_features else None,
        "rear_relu": cell.rear_relu,
        "seed": job.seed,
        "epochs": cfg.epochs,
        "lr": cell.lr,
        "test_acc": test_acc,
        "train_seconds": round(train_seconds, 3),
        "group_size": group_size,
        "loss_curve": curve,
        "job": asdict(job),
    }
    return CellRecord.model_validate(record).model_dump(mode="json")
