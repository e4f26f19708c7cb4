"""What every training loop here shares: device and precision, the reference SGD schedule, evaluation, logging."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger("elfdd")


def resolve_device(name: str) -> torch.device:
    """``auto`` takes a CUDA GPU when one is present and the CPU otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from ..core.errors import BadInput

        raise BadInput("config device: cuda was asked for but no CUDA GPU is available")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def describe_machine(device: torch.device) -> str:
    """What ran the work, as results and benchmarks name it: the GPU's name, or the CPU's cores and vector unit
    (``2-core CPU (AVX-512 BF16)``: which of this project's machine kinds)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    isa = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else platform.machine()
    return f"{os.cpu_count()}-core CPU ({isa})"


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto`` picks bf16 autocast on CUDA and on CPUs with native bf16; elsewhere fp32.

    Measured on this project's 2-core AVX2 machine: bf16 autocast made a ConvNet forward 18x slower (emulated).
    """
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def configure_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where asked (``precision`` already resolved by :func:`resolve_precision`)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed the global RNGs (weight init) and return a generator for data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def sgd_with_half_decay(
    params, lr: float, momentum: float, weight_decay: float, epochs: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The reference schedule: SGD, lr x0.1 once at half of the epochs (stepped once per epoch)."""
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[max(1, epochs // 2)], gamma=0.1)
    return optimizer, scheduler


# Images per forward pass where nothing is trained (test evaluation, feature extraction, DM's real embeddings): on
# the CPU measured once per machine (pipeline/inference.py) unless set here (bench/step_time.py does); a GPU wants
# large batches.
CPU_INFERENCE_BATCH: int | None = None
GPU_INFERENCE_BATCH = 512


def inference_batch(device: torch.device) -> int:
    if device.type == "cuda":
        return GPU_INFERENCE_BATCH
    if CPU_INFERENCE_BATCH is not None:
        return CPU_INFERENCE_BATCH
    from .inference import cpu_inference_batch

    return cpu_inference_batch()


def forward_in_chunks(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, model: nn.Module, device: torch.device
) -> torch.Tensor:
    """``forward(x)`` in passes of :func:`inference_batch` images when ``model`` has no layer that mixes the
    samples of a batch (batch norm in train mode does; then in one pass)."""
    size = inference_batch(device)
    if len(x) <= size or any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return forward(x)
    return torch.cat([forward(x[start : start + size]) for start in range(0, len(x), size)])


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    precision: str,
    batch_size: int | None = None,
) -> float:
    """Top-1 accuracy (a fraction) of ``model`` in eval mode on clean images, ``batch_size`` at a time (default:
    :func:`inference_batch`)."""
    batch_size = batch_size or inference_batch(device)
    was_training = model.training
    model.eval()
    correct = 0
    with autocast(device, precision):
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size].to(device))
            correct += int((logits.argmax(1).cpu() == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(x))


class Progress:
    """Logs a line at most every ``every`` steps and on the last one (long stages show where they are)."""

    def __init__(self, what: str, total: int, every: int | None = None):
        self.what, self.total = what, total
        self.every = every or max(1, total // 10)

    def due(self, step: int) -> bool:
        """Whether ``step`` is one that logs (callers read device values back only then)."""
        return step % self.every == 0 or step == self.total

    def __call__(self, step: int, message: str = "") -> None:
        if self.due(step):
            log.info(
                "%s %d/%d %s",
                self.what,
                step,
                self.total,
                message,
                extra={"progress": (self.what, step, self.total)},
            )


class NonFiniteWatch:
    """The first epoch at which each loss term was NaN or Inf, and its value then, kept on the device.

    :meth:`update` runs every step without a host sync (a per-step ``.item()`` stalls a GPU); :meth:`first` reads
    the record back, one sync, at the moments the caller chooses, and still names the exact epoch and term."""

    def __init__(self, terms: tuple[str, ...], device: torch.device):
        self.terms = terms
        self.first_epoch = torch.full((len(terms),), -1, dtype=torch.long, device=device)
        self.value = torch.zeros(len(terms), device=device)

    def update(self, losses: dict[str, torch.Tensor], epoch: int) -> None:
        values = torch.stack([losses[t].detach().float() for t in self.terms])
        new = ~torch.isfinite(values) & (self.first_epoch < 0)
        self.first_epoch = torch.where(new, epoch, self.first_epoch)
        self.value = torch.where(new, values, self.value)

    def first(self) -> tuple[str, int, float] | None:
        """(term, epoch, value) of the earliest non-finite term, or None while every term is finite."""
        epochs = self.first_epoch.tolist()
        hits = sorted((e, i) for i, e in enumerate(epochs) if e >= 0)
        if not hits:
            return None
        epoch, i = hits[0]
        return self.terms[i], epoch, float(self.value[i])
