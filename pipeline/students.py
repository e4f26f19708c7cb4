"""ELF student training: (image, cached teacher feature, label) from the store, the student cut at its split."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..models import adapter_pair, create_model
from ..store.reader import FeatureDataset
from . import augment
from .config import StudentsConfig
from .errors import BadInput
from .losses import LOSS_TERMS, feature_loss, result_mode
from .training import Progress, autocast, evaluate, seed_everything, sgd_with_half_decay


@dataclass(frozen=True)
class StudentJob:
    """One cell of the student grid."""

    student: str
    loss_mode: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.student}__{self.loss_mode}__seed{self.seed}"


def student_jobs(cfg: StudentsConfig) -> list[StudentJob]:
    return [StudentJob(a, m, s) for a in cfg.archs for m in cfg.modes for s in cfg.seeds]


class NumericalFault(RuntimeError):
    """A loss term became NaN or Inf."""


def train_student(
    job: StudentJob,
    dataset: FeatureDataset,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    cfg: StudentsConfig,
    num_classes: int,
    device: torch.device,
    precision: str,
) -> dict[str, Any]:
    """Train one student on the synthetic set and return its results.json run record."""
    terms = LOSS_TERMS[job.loss_mode]
    generator = seed_everything(job.seed)
    image_shape = tuple(x_test.shape[1:])
    model = create_model(
        job.student, image_shape[0], num_classes, image_shape[-1], **cfg.arch_kwargs.get(job.student, {})
    ).to(device)
    split = model.default_split
    params = list(model.parameters())
    adapters = None
    if "front" in terms or "rear" in terms:
        adapters = adapter_pair(model.feature_shape(image_shape, split), dataset.feature_shape).to(device)
        params += list(adapters.parameters())
    optimizer, scheduler = sgd_with_half_decay(params, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.epochs)
    progress = Progress(f"student {job.name}", cfg.epochs)
    started = time.perf_counter()
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(dataset), generator=generator).numpy()
        for start in range(0, len(order), cfg.batch_size):
            images, features, labels = dataset.get_batch(np.sort(order[start : start + cfg.batch_size]))
            images, labels = images.to(device), labels.to(device)
            teacher = features[:, 0].to(device)  # clean policy: one stored view
            if cfg.dsa:
                images, _ = augment.augment(images, generator)
            with autocast(device, precision):
                h = model.front(images, split)
                losses = {"task": F.cross_entropy(model.rear(h, split).float(), labels)}
                if "front" in terms:
                    losses["front"] = cfg.lambda_front * feature_loss(
                        cfg.feature_loss, adapters["to_teacher"](h).float(), teacher
                    )
                if "rear" in terms:
                    losses["rear"] = cfg.lambda_rear * F.cross_entropy(
                        model.rear(adapters["from_teacher"](teacher), split).float(), labels
                    )
            loss = sum(losses[t] for t in terms)
            bad = [t for t in terms if not math.isfinite(losses[t].item())]
            if bad:
                raise NumericalFault(
                    f"student {job.name}: loss term {bad[0]} is {float(losses[bad[0]])} at epoch {epoch}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        progress(epoch, " ".join(f"{t} {losses[t].item():.3f}" for t in terms))
    train_seconds = time.perf_counter() - started
    test_acc = evaluate(model, x_test, y_test, device, precision)
    uses_features = adapters is not None
    return {
        "student": job.student,
        "mode": result_mode(job.loss_mode),
        "loss": {
            "mode": job.loss_mode,
            "feature_loss": cfg.feature_loss if "front" in terms else None,
            "lambda_front": cfg.lambda_front if "front" in terms else None,
            "lambda_rear": cfg.lambda_rear if "rear" in terms else None,
        },
        "teacher_id": dataset.teacher_id if uses_features else None,
        "teacher_epoch": dataset.epoch if uses_features else None,
        "layer": dataset.layer if uses_features else None,
        "view_policy": "clean" if uses_features else None,
        "student_split": split,
        "seed": job.seed,
        "epochs": cfg.epochs,
        "test_acc": test_acc,
        "train_seconds": round(train_seconds, 3),
        "job": asdict(job),
    }


def check_store_matches(
    dataset: FeatureDataset, synthetic_sha256: str | None, checkpoint_sha256: str | None
) -> None:
    """Refuse a store that was built from another synthetic set or another checkpoint than this run's."""
    from ..store.reader import FeatureStore

    store = FeatureStore(dataset.path)
    if synthetic_sha256 is not None and store.meta["synthetic_sha256"] != synthetic_sha256:
        raise BadInput(
            f"store {dataset.path} was built from synthetic set {store.meta['synthetic_sha256'][:12]}, this run has {synthetic_sha256[:12]}"
        )
    if (
        checkpoint_sha256 is not None
        and store.checkpoint_sha256(dataset.teacher_id, dataset.epoch) != checkpoint_sha256
    ):
        raise BadInput(
            f"store {dataset.path}: features of teacher {dataset.teacher_id} epoch {dataset.epoch} come from another checkpoint than this run's"
        )
