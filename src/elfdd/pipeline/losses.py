"""ELF's loss modes and feature losses; where they differ from the reference code, the comments below say how."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ..core.registry import Registry

# Which terms each loss mode sums. Unlike the reference, front_task uses the chosen feature loss and front_rear
# keeps lambda_rear.
LOSS_TERMS: dict[str, tuple[str, ...]] = {
    "task": ("task",),
    "front_rear_task": ("front", "rear", "task"),
    "front_task": ("front", "task"),
    "rear_task": ("rear", "task"),
    "front_rear": ("front", "rear"),
    # soft labels: the teacher's cached logits of the very view the student sees (logit_loss)
    "logit": ("logit",),
    "logit_task": ("logit", "task"),
    "front_rear_logit_task": ("front", "rear", "logit", "task"),
}
# The terms that read the teacher's outputs from the store (or from the online teacher).
TEACHER_TERMS = frozenset({"front", "rear", "logit"})
# The name a loss mode has in results.json / the report: soft labels alone as SRe2L/RDED evaluate (logit), soft
# labels plus the task loss (kd), ELF with soft labels (elf_kd).
RESULT_MODE = {
    "task": "baseline",
    "front_rear_task": "elf",
    "logit_task": "kd",
    "front_rear_logit_task": "elf_kd",
}


def result_mode(loss_mode: str) -> str:
    return RESULT_MODE.get(loss_mode, loss_mode)


FeatureLossFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
FEATURE_LOSSES: Registry[FeatureLossFn] = Registry("feature loss")


def register_feature_loss(name: str, fn: FeatureLossFn) -> None:
    """Register ``fn(student, teacher, temperature) -> scalar`` as ``students.feature_losses`` value ``name``."""
    FEATURE_LOSSES.register(name, fn)


def list_feature_losses() -> list[str]:
    return FEATURE_LOSSES.names()


def feature_loss(
    kind: str, student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Distance between the (adapted) student front output and the teacher feature, both (B, C, ...)."""
    return FEATURE_LOSSES[FEATURE_LOSSES.check(kind)](student, teacher, temperature)


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft labels (Hinton et al. 2015): KL(softmax(teacher / T) || softmax(student / T)) per sample, mean over the
    batch, times T^2 so the gradient scale does not shrink with T. Both (B, classes) logits."""
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_target = F.log_softmax(teacher.float() / temperature, dim=1)
    # F.kl_div(log_student, target, reduction="batchmean") written out: torch.vmap has no batching rule for kl_div
    # (a batched group of soft-label cells would fall back to a loop), and log_softmax keeps 0 * log 0 out.
    kl = (log_target.exp() * (log_target - log_student)).sum(dim=1).mean()
    return kl * temperature**2


def _soft_target_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    # As the reference: soft-target cross-entropy with a softmax over channels at every position; the raw
    # (non-negative, unnormalised) teacher activations are the target. Its gradient, softmax(s) * sum_c(t) - t,
    # grows with the teacher's activation mass per position (about 230 for the default ConvNet teacher).
    return F.cross_entropy(student, teacher)


def _channel_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    # The same channel-wise matching against a proper distribution: the teacher normalised over channels at
    # each position, softmax(t / T), and the student's softmax(s / T); KL per position, mean over B*H*W, times
    # T^2 so the gradient scale does not shrink with T (Hinton et al. 2015). Its gradient is bounded by 2T.
    log_student = F.log_softmax(student / temperature, dim=1)
    target = F.softmax(teacher / temperature, dim=1)
    per_position = F.kl_div(log_student, target, reduction="none").sum(1)
    return per_position.mean() * temperature**2


def _per_sample_cosine(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    # One cosine per sample (the reference took one over the whole batch flattened into a vector).
    return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1)).mean()


register_feature_loss("ce", _soft_target_ce)
register_feature_loss("kl", _channel_kl)
register_feature_loss("l2", lambda s, t, _: F.mse_loss(s, t))
register_feature_loss("l1", lambda s, t, _: F.l1_loss(s, t))
register_feature_loss("cosine", _per_sample_cosine)
