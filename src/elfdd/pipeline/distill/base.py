"""What every distillation method shares: initial images, the image optimiser with the optional MetaDD term, the
synthetic set it returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...core.errors import BadInput
from ...models import SplitNet, create_model
from .. import augment
from ..data import DataSplits
from ..resume import NO_RESUME, ResumePoint, rng_state, set_rng_state
from ..synthetic import SyntheticSet
from ..training import Progress

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import DistillConfig

# A regulariser of the synthetic images: (augmented images, labels, backbone network) -> loss (MetaDD).
Regulariser = Callable[[torch.Tensor, torch.Tensor, torch.nn.Module], torch.Tensor]


def initial_images(
    data: DataSplits, ipc: int, init: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` images per class: random real ones (``real``) or Gaussian noise (``noise``)."""
    images, labels = [], []
    for c in range(data.num_classes):
        index = (data.y_train == c).nonzero().squeeze(1)
        if len(index) < ipc:
            raise BadInput(f"class {c} has {len(index)} training images, fewer than distill.ipc={ipc}")
        chosen = index[torch.randperm(len(index), generator=generator)[:ipc]]
        images.append(
            data.x_train[chosen]
            if init == "real"
            else torch.randn((ipc, *data.image_shape), generator=generator)
        )
        labels.append(torch.full((ipc,), c, dtype=torch.long))
    return torch.cat(images).clone(), torch.cat(labels)


def class_indices(data: DataSplits) -> list[torch.Tensor]:
    return [(data.y_train == c).nonzero().squeeze(1) for c in range(data.num_classes)]


def real_batch(
    rows: torch.Tensor, cfg: DistillConfig, image_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One class's draw for an image update: ``cfg.batch_real`` of its real images (indices into the training set)
    and the Siamese DSA parameters for them and for the class's synthetic images (the same op and per-row
    parameters; all zero, i.e. no augmentation, without ``cfg.dsa``)."""
    take = rows[torch.randperm(len(rows), generator=generator)[: cfg.batch_real]]
    p_real, p_syn = augment.siamese_params(len(take), cfg.ipc, image_size, generator)
    if not cfg.dsa:
        p_real, p_syn = p_real.zero_(), p_syn.zero_()
    return take, p_real, p_syn


def random_net(cfg: DistillConfig, data: DataSplits, device: torch.device) -> SplitNet:
    """A freshly initialised network of the distillation architecture."""
    channels, size = data.image_shape[0], data.image_shape[-1]
    return create_model(cfg.arch, channels, data.num_classes, size, **cfg.arch_kwargs).to(device)


class ImageUpdate:
    """SGD on the synthetic pixels (and any extra learnable tensors, e.g. MTT's lr) with the method's loss plus the
    optional regulariser; records the method's objective for the tests and the bench."""

    def __init__(
        self,
        images: torch.Tensor,
        cfg: DistillConfig,
        what: str,
        regulariser: Regulariser | None = None,
        extra: Sequence[tuple[torch.Tensor, float]] = (),
    ):
        self.images = images.requires_grad_(True)
        self.optimizer = torch.optim.SGD([images], lr=cfg.image_lr, momentum=cfg.momentum)
        self.extra_tensors = [t for t, _ in extra]
        self.extra = [torch.optim.SGD([t.requires_grad_(True)], lr=lr, momentum=0.5) for t, lr in extra]
        self.regulariser = regulariser
        self.progress = Progress(what, cfg.iterations)
        self.history: list[float] = []

    def step(
        self,
        loss: torch.Tensor,
        iteration: int | None,
        regularise: tuple[torch.Tensor, torch.Tensor, torch.nn.Module] | None = None,
    ) -> None:
        """One update from the method's ``loss``; ``regularise`` = (augmented images, labels, backbone);
        ``iteration`` None for an update that is not the last of its iteration (no progress line)."""
        total = loss
        message = f"loss {loss.item():.4f}"
        if self.regulariser is not None and regularise is not None:
            extra = self.regulariser(*regularise)
            total = total + extra
            message += f" metadd {extra.item():.4f}"
        for optimizer in (self.optimizer, *self.extra):
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        for optimizer in (self.optimizer, *self.extra):
            optimizer.step()
        self.history.append(loss.item())
        if iteration is not None:
            self.progress(iteration, message)

    def state(self) -> dict:
        """What a resume point needs: the learned tensors, the optimisers' momenta, the objective's history."""
        return {
            "tensors": [t.detach().cpu() for t in (self.images, *self.extra_tensors)],
            "optimizers": [o.state_dict() for o in (self.optimizer, *self.extra)],
            "history": torch.tensor(self.history, dtype=torch.float64),
        }

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for tensor, saved in zip((self.images, *self.extra_tensors), state["tensors"], strict=True):
                tensor.copy_(saved)
        for optimizer, saved in zip((self.optimizer, *self.extra), state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        self.history = state["history"].tolist()


@dataclass
class Distillation:
    """What a method's loop works on: the data, its config, the synthetic images being learned and their update."""

    data: DataSplits
    cfg: DistillConfig
    images: torch.Tensor
    labels: torch.Tensor
    update: ImageUpdate
    generator: torch.Generator
    device: torch.device
    precision: str
    resume: ResumePoint = NO_RESUME

    def iterations(self) -> Iterator[int]:
        """1..cfg.iterations, continuing after the last resume point; the images, optimisers and RNG streams go to
        the resume point every ``cfg.resume_every`` iterations, so a killed run ends with the same images."""
        start = 0
        restored = self.resume.load()
        if restored is not None:
            start, state = restored
            self.update.load_state(state["update"])
            set_rng_state(self.generator, state["rng"])
        for iteration in range(start + 1, self.cfg.iterations + 1):
            yield iteration
            if iteration % self.cfg.resume_every == 0 and iteration < self.cfg.iterations:
                self.resume.save(iteration, {"update": self.update.state(), "rng": rng_state(self.generator)})


def synthetic_set(
    images: torch.Tensor, labels: torch.Tensor, data: DataSplits, cfg: DistillConfig, seed: int, **extra
) -> SyntheticSet:
    return SyntheticSet(
        images=images.detach().cpu(),
        labels=labels,
        method=cfg.method,
        ipc=cfg.ipc,
        dataset=data.name,
        num_classes=data.num_classes,
        normalization=data.normalization(),
        extra={"iterations": cfg.iterations, "arch": cfg.arch, "init": cfg.init, "seed": seed, **extra},
    )
