"""Distillation methods (DM, DSA gradient matching, MTT) with the optional MetaDD regulariser."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ...core.errors import BadInput
from ..config import DistillConfig
from ..data import DataSplits
from ..resume import NO_RESUME, ResumePoint
from ..synthetic import SyntheticSet
from ..training import seed_everything
from .base import Distillation, ImageUpdate, initial_images, synthetic_set
from .dm import distill_dm
from .gm import distill_gm
from .metadd import MetaDD, train_auxiliaries
from .mtt import distill_mtt

__all__ = ["distill", "initial_images"]


def distill(
    data: DataSplits,
    cfg: DistillConfig,
    device: torch.device,
    precision: str,
    seed: int,
    experts_dir: Path | None = None,
    resume: ResumePoint = NO_RESUME,
) -> tuple[SyntheticSet, ImageUpdate]:
    """Distil ``cfg.ipc`` images per class with ``cfg.method``; returns the set and the update (its loss history).

    MTT reads (or first records) expert trajectories under ``experts_dir``. ``resume``: where the state goes every
    ``cfg.resume_every`` iterations and where a killed run continues from."""
    started = time.perf_counter()
    generator = seed_everything(seed)
    init, labels = initial_images(data, cfg.ipc, cfg.init, generator)
    images = init.to(device)
    if device.type != "cpu":  # the real images live on the accelerator: no host copy per class and step
        data = dataclasses.replace(data, x_train=data.x_train.to(device), y_train=data.y_train.to(device))
    regulariser = None
    if cfg.metadd.enabled:
        regulariser = MetaDD(train_auxiliaries(data, cfg.metadd, device, precision, seed), cfg.metadd)
    extra: dict = {}
    if cfg.method == "mtt":
        from ..experts import load_trajectories, record_experts

        if experts_dir is None:
            raise BadInput("distill.method mtt needs a folder for its expert trajectories")
        manifest = record_experts(data, cfg, experts_dir, device, precision, seed)
        trajectories = [t.to(device) for t in load_trajectories(experts_dir, manifest)]
        syn_lr = torch.tensor(cfg.mtt.syn_lr_init, device=device)
        update = ImageUpdate(images, cfg, "distill mtt", regulariser, extra=[(syn_lr, cfg.mtt.lr_lr)])
        job = Distillation(data, cfg, images, labels, update, generator, device, precision, resume)
        extra = distill_mtt(job, trajectories=trajectories, syn_lr=syn_lr)
        extra["experts"] = manifest["key"]
    else:
        update = ImageUpdate(images, cfg, f"distill {cfg.method}", regulariser)
        job = Distillation(data, cfg, images, labels, update, generator, device, precision, resume)
        extra = (distill_dm if cfg.method == "dm" else distill_gm)(job)
    if not torch.isfinite(images).all():
        raise BadInput(f"distill {cfg.method}: the images diverged to NaN/Inf; lower distill.lr_img")
    resume.clear()
    extra["seconds"] = round(time.perf_counter() - started, 2)
    extra["lr_img"] = cfg.image_lr
    if regulariser is not None:
        extra["metadd"] = {"archs": cfg.metadd.archs, **regulariser.last}
    return synthetic_set(images, labels, data, cfg, seed, **extra), update
