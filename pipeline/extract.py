"""Feature extraction: the synthetic set through each chosen teacher checkpoint, features taken by module name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..models import forward_with_features
from ..store import writer
from .config import ExtractConfig, TeacherConfig
from .synthetic import SyntheticSet
from .teacher import build_teacher, load_checkpoint
from .training import log


@torch.inference_mode()
def teacher_features(
    model: torch.nn.Module, images: torch.Tensor, layers: list[str], device: torch.device, batch_size: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features at ``layers`` and logits of clean images, in fp32 (the store decides the stored dtype)."""
    model.eval()
    features: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    logits = []
    for start in range(0, len(images), batch_size):
        out, captured = forward_with_features(model, images[start : start + batch_size].to(device), layers)
        logits.append(out.float().cpu().numpy())
        for layer in layers:
            features[layer].append(captured[layer].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in features.items()}, np.concatenate(logits)


def extract_to_store(
    synthetic: SyntheticSet,
    teacher_cfg: TeacherConfig,
    manifest: dict,
    teacher_dir: Path,
    store_path: Path,
    epochs: list[int],
    layers: list[str],
    cfg: ExtractConfig,
    device: torch.device,
) -> list[str]:
    """Write clean-view (V=1) features of every epoch x layer into the store; returns the array paths written."""
    writer.create_store(
        store_path,
        synthetic.images.numpy(),
        synthetic.labels.numpy(),
        dataset=synthetic.dataset,
        num_classes=synthetic.num_classes,
        normalization=synthetic.normalization,
        version=__version__,
    )
    writer.write_teacher(
        store_path,
        teacher_cfg.id,
        {
            "arch": teacher_cfg.arch,
            "arch_kwargs": teacher_cfg.arch_kwargs,
            "trained_on": manifest["trained_on"],
            "seed": manifest["seed"],
        },
    )
    written = []
    model = build_teacher(teacher_cfg, tuple(synthetic.images.shape[1:]), synthetic.num_classes).to(device)
    for epoch in epochs:
        state, digest = load_checkpoint(teacher_dir, manifest, epoch)
        model.load_state_dict(state)
        features, logits = teacher_features(model, synthetic.images, layers, device, cfg.batch_size)
        writer.write_epoch_features(
            store_path,
            teacher_cfg.id,
            epoch,
            digest,
            {layer: values[:, None] for layer, values in features.items()},
            logits[:, None],
            view_policy="clean",
            dtype=cfg.dtype,
            clevel=cfg.clevel,
        )
        written += [f"{teacher_cfg.id}/epoch_{epoch:04d}/{layer}" for layer in layers]
        log.info(
            "extract teacher %s epoch %d: %s",
            teacher_cfg.id,
            epoch,
            ", ".join(f"{k} {v.shape[1:]}" for k, v in features.items()),
        )
    return written
