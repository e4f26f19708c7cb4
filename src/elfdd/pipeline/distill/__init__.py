"""Distillation methods (DM, DSA gradient matching, MTT; ``register_method`` adds one) with the optional MetaDD\nregulariser."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...core.errors import BadInput
from ...core.registry import Registry
from ..data import DataSplits
from ..resume import NO_RESUME, ResumePoint
from ..synthetic import SyntheticSet
from ..training import log, seed_everything
from .base import Distillation, ImageUpdate, initial_images, synthetic_set
from .dm import distill_dm
from .gm import distill_gm
from .metadd import MetaDD, clear_auxiliaries, train_auxiliaries
from .mtt import distill_mtt

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import DistillConfig

__all__ = [
    "METHODS",
    "Method",
    "MethodContext",
    "distill",
    "initial_images",
    "list_methods",
    "register_method",
]


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a method starts from: the initial images (on the device) and labels, and everything a Distillation
    needs besides its ImageUpdate (which the method builds: MTT learns a step size alongside the images)."""

    data: DataSplits
    cfg: DistillConfig
    images: torch.Tensor
    labels: torch.Tensor
    regulariser: MetaDD | None
    generator: torch.Generator
    device: torch.device
    precision: str
    resume: ResumePoint
    seed: int
    experts_dir: Path | None

    def job(self, update: ImageUpdate) -> Distillation:
        return Distillation(
            self.data,
            self.cfg,
            self.images,
            self.labels,
            update,
            self.generator,
            self.device,
            self.precision,
            self.resume,
        )


@dataclasses.dataclass(frozen=True)
class Method:
    """``run(context) -> (extra, update)``: distil ``context.images`` in place; ``extra`` is saved with the set.
    ``lr_img``: the image learning rate when ``distill.lr_img`` is not given. A method with ``source(data, cfg)``
    instead reads a set made elsewhere (no images are learned)."""

    run: Callable[[MethodContext], tuple[dict, ImageUpdate]] | None
    lr_img: float | None
    source: Callable[[DataSplits, DistillConfig], SyntheticSet] | None = None


METHODS: Registry[Method] = Registry("distillation method")


def register_method(
    name: str,
    run: Callable[[MethodContext], tuple[dict, ImageUpdate]] | None,
    lr_img: float | None,
    source: Callable[[DataSplits, DistillConfig], SyntheticSet] | None = None,
) -> None:
    """Register a distillation method (``run``) or a source of made sets (``source``) as ``distill.method``
    value ``name``."""
    METHODS.register(name, Method(run, lr_img, source))


def list_methods() -> list[str]:
    return METHODS.names()


def _matching(loop: Callable[[Distillation], dict]) -> Callable[[MethodContext], tuple[dict, ImageUpdate]]:
    """A method that updates the images alone (DM's distribution matching, DSA's gradient matching)."""

    def run(ctx: MethodContext) -> tuple[dict, ImageUpdate]:
        update = ImageUpdate(ctx.images, ctx.cfg, f"distill {ctx.cfg.method}", ctx.regulariser)
        return loop(ctx.job(update)), update

    return run


def _mtt(ctx: MethodContext) -> tuple[dict, ImageUpdate]:
    """Trajectory matching: expert trajectories recorded once under ``experts_dir``; a learned student step size."""
    from ..teachers.experts import load_trajectories, record_experts

    if ctx.experts_dir is None:
        raise BadInput("distill.method mtt needs a folder for its expert trajectories")
    manifest = record_experts(ctx.data, ctx.cfg, ctx.experts_dir, ctx.device, ctx.precision, ctx.seed)
    trajectories = [t.to(ctx.device) for t in load_trajectories(ctx.experts_dir, manifest)]
    syn_lr = torch.tensor(ctx.cfg.mtt.syn_lr_init, device=ctx.device)
    update = ImageUpdate(
        ctx.images, ctx.cfg, "distill mtt", ctx.regulariser, extra=[(syn_lr, ctx.cfg.mtt.lr_lr)]
    )
    extra = distill_mtt(ctx.job(update), trajectories=trajectories, syn_lr=syn_lr)
    extra["experts"] = manifest["key"]
    return extra, update


def _random_subset(ctx: MethodContext) -> tuple[dict, ImageUpdate]:
    """The yardstick every set is measured against (DD-Ranking's random subset): ``ipc`` real training images per
    class, drawn class-balanced with the run's seed (the ``real`` initialisation every method starts from), nothing
    learned."""
    if ctx.cfg.init != "real":
        raise BadInput("distill.method random draws real training images: it needs distill.init real")
    return {"selection": "class-balanced random real images"}, ImageUpdate(ctx.images, ctx.cfg, "random")


# The reference image learning rates: DM 1 (CIFAR), DSA 0.1, MTT 100-1000 (the DM, DSA and MTT papers' code).
register_method("dm", _matching(distill_dm), lr_img=1.0)
register_method("dsa", _matching(distill_gm), lr_img=0.1)
register_method("mtt", _mtt, lr_img=100.0)
register_method("random", _random_subset, lr_img=0.0)


def _from_file(data: DataSplits, cfg: DistillConfig) -> SyntheticSet:
    """A set made elsewhere, read by its format (pipeline/formats) into the run's input space."""
    from ..formats import FORMATS, detect_format, import_set

    paths = [Path(p) for p in cfg.source.paths]
    name = detect_format(paths) if cfg.source.format == "auto" else cfg.source.format
    options = {**cfg.source.model_dump(), "format": name}
    synthetic = import_set(FORMATS[name].read(paths, options), data, options)
    if synthetic.ipc != cfg.ipc:
        log.info(
            "distill file: the set has %d images per class (distill.ipc %d is ignored)",
            synthetic.ipc,
            cfg.ipc,
        )
    return synthetic


register_method("file", None, None, source=_from_file)


def distill(
    data: DataSplits,
    cfg: DistillConfig,
    device: torch.device,
    precision: str,
    seed: int,
    experts_dir: Path | None = None,
    resume: ResumePoint = NO_RESUME,
) -> tuple[SyntheticSet, ImageUpdate | None]:
    """Distil ``cfg.ipc`` images per class with ``cfg.method``; returns the set and the update (its loss history;
    None for a set made elsewhere).

    MTT reads (or first records) expert trajectories under ``experts_dir``. ``resume``: where the state goes every
    ``cfg.resume_every`` iterations and where a killed run continues from."""
    method = METHODS[cfg.method]
    if method.source is not None:  # a set made elsewhere: nothing is learned
        return method.source(data, cfg), None
    assert method.run is not None  # a registered method either learns a set or reads one
    started = time.perf_counter()
    generator = seed_everything(seed)
    init, labels = initial_images(data, cfg.ipc, cfg.init, generator)
    images = init.to(device)
    if device.type != "cpu":  # the real images live on the accelerator: no host copy per class and step
        data = dataclasses.replace(data, x_train=data.x_train.to(device), y_train=data.y_train.to(device))
    regulariser = None
    if cfg.metadd.enabled:
        regulariser = MetaDD(train_auxiliaries(data, cfg.metadd, device, precision, seed, resume), cfg.metadd)
    context = MethodContext(
        data, cfg, images, labels, regulariser, generator, device, precision, resume, seed, experts_dir
    )
    extra, update = method.run(context)
    if not torch.isfinite(images).all():
        raise BadInput(f"distill {cfg.method}: the images diverged to NaN/Inf; lower distill.lr_img")
    resume.clear()
    if regulariser is not None:
        clear_auxiliaries(resume, cfg.metadd)
    # every invocation's seconds where a resumed distillation ran in several (each to its last resume point)
    extra["seconds"] = round(resume.earlier + time.perf_counter() - started, 2)
    extra["lr_img"] = cfg.image_lr
    if regulariser is not None:
        extra["metadd"] = {"archs": cfg.metadd.archs, **regulariser.last}
    return synthetic_set(images, labels, data, cfg, seed, **extra), update
