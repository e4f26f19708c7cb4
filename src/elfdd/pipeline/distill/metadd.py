"""MetaDD (arXiv 2410.05103) as a plug-in regulariser of the synthetic pixels for DM, DSA and MTT.

M auxiliary architectures, briefly trained on real data and frozen, score the synthetic images:
- the architecture-invariant loss L_ai = sum_m [ CE(aux_m(x), y) + KL(p_backbone || p_aux_m) ], the backbone being
  the method's network of the iteration (its distribution is the target, detached);
- the variance across the M architectures of their normalised Grad-CAM maps, averaged over pixels and images
  (arXiv 2410.05103, Sec. 3, with the sum over m the printed equation lacks).
Both are differentiated to the pixels only (Grad-CAM with create_graph), weighted by ``weight_ai`` and ``weight_var``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from ...core.errors import BadInput
from ...models import SplitNet, create_model
from ..data import DataSplits
from ..resume import NO_RESUME, ResumePoint, rng_state, set_rng_state
from ..teachers.train import train_epoch
from ..training import evaluate, log

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import MetaDDConfig


def train_auxiliaries(
    data: DataSplits,
    cfg: MetaDDConfig,
    device: torch.device,
    precision: str,
    seed: int,
    resume: ResumePoint = NO_RESUME,
) -> list[SplitNet]:
    """Each auxiliary architecture trained ``aux_epochs`` epochs on ``aux_subset`` real images, then frozen.
    Beside ``resume`` (the distillation's resume point) lie each finished auxiliary's weights, one file each, and the
    one in training after every epoch (weights and momentum), so a killed distillation continues from there, in this
    session or a later one, with the same auxiliaries bitwise as an uninterrupted run."""
    generator = torch.Generator().manual_seed(seed + 104729)
    keep = torch.randperm(len(data.y_train), generator=generator)[: cfg.aux_subset]
    x, y = data.x_train[keep], data.y_train[keep]
    channels, size = data.image_shape[0], data.image_shape[-1]
    finished, training = _auxiliary_points(resume, cfg)
    restored = training.load()
    current = restored[1] if restored is not None else None
    auxiliaries = []
    for index, arch in enumerate(cfg.archs):
        torch.manual_seed(seed)
        model = create_model(arch, channels, data.num_classes, size).to(device)
        if len(model.feature_shape(data.image_shape)) != 3:
            raise BadInput(f"distill.metadd.archs: {arch} has no spatial feature map for Grad-CAM")
        kept = finished[index].load()
        if kept is not None:  # trained before the run was killed
            model.load_state_dict(kept[1]["model"])
            set_rng_state(generator, kept[1]["rng"])  # the streams as this auxiliary left them
            auxiliaries.append(_frozen(model, arch, data, device, precision))
            continue
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        first = 1
        if current is not None and current["index"] == index:
            model.load_state_dict(current["model"])
            optimizer.load_state_dict(current["optimizer"])
            set_rng_state(generator, current["rng"])
            first = current["epoch"] + 1
        for epoch in range(first, cfg.aux_epochs + 1):
            train_epoch(model, optimizer, x, y, 64, True, generator, device, precision)
            log.info("metadd auxiliary %s: epoch %d/%d", arch, epoch, cfg.aux_epochs)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "index": index}
            training.save(epoch, {**state, "epoch": epoch, "rng": rng_state(generator)})
        finished[index].save(cfg.aux_epochs, {"model": model.state_dict(), "rng": rng_state(generator)})
        training.clear()
        auxiliaries.append(_frozen(model, arch, data, device, precision))
    return auxiliaries


def clear_auxiliaries(resume: ResumePoint, cfg: MetaDDConfig) -> None:
    """Removes what ``train_auxiliaries`` kept beside ``resume``, once the distillation that needed it is done."""
    finished, training = _auxiliary_points(resume, cfg)
    for point in [*finished, training]:
        point.clear()


def _auxiliary_points(resume: ResumePoint, cfg: MetaDDConfig) -> tuple[list[ResumePoint], ResumePoint]:
    """The finished auxiliaries' resume points (``distill_metadd_<index>_<arch>``) and the one in training's."""
    finished = [resume.beside(f"distill_metadd_{index}_{arch}") for index, arch in enumerate(cfg.archs)]
    return finished, resume.beside("distill_metadd_training")


def _frozen(model: SplitNet, arch: str, data: DataSplits, device: torch.device, precision: str) -> SplitNet:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    log.info(
        "metadd auxiliary %s: test %.4f", arch, evaluate(model, data.x_test, data.y_test, device, precision)
    )
    return model


def grad_cam(model: SplitNet, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Normalised Grad-CAM (B, H, W) in [0, 1] at the model's split point for the true class, differentiable in x."""
    features = model.front(x)
    score = model.rear(features).float().gather(1, labels[:, None]).sum()
    (grads,) = torch.autograd.grad(score, features, create_graph=True)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * features).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    return cam / (cam.flatten(1).amax(1).view(-1, 1, 1) + 1e-8)


class MetaDD:
    """Callable regulariser: (augmented synthetic images, labels, backbone) -> weighted MetaDD loss."""

    def __init__(self, auxiliaries: list[SplitNet], cfg: MetaDDConfig):
        self.auxiliaries, self.cfg = auxiliaries, cfg
        self.last: dict[str, float] = {}

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, backbone: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            target = F.softmax(backbone(x).float(), dim=1)
        invariant = x.new_zeros(())
        cams = []
        for aux in self.auxiliaries:
            logits = aux(x).float()
            invariant = invariant + F.cross_entropy(logits, labels)
            invariant = invariant + F.kl_div(F.log_softmax(logits, 1), target, reduction="batchmean")
            if self.cfg.weight_var > 0:
                cams.append(grad_cam(aux, x, labels))
        variance = torch.stack(cams).var(dim=0, unbiased=False).mean() if cams else x.new_zeros(())
        self.last = {"ai": float(invariant.detach()), "cam_var": float(variance.detach())}
        return self.cfg.weight_ai * invariant + self.cfg.weight_var * variance
