"""Feature extraction: the synthetic set through each chosen teacher checkpoint, features taken by module name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ... import __version__
from ...models import forward_with_features
from ...store import writer
from .. import augment
from ..config import ExtractConfig, TeacherConfig
from ..synthetic import SyntheticSet
from ..teachers.train import teacher_at
from ..training import inference_batch, log


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


def view_params(n: int, cfg: ExtractConfig, image_size: int) -> torch.Tensor:
    """(n, V, P) DSA parameters of the stored views, from ``cfg.view_seed``; view 0 is the clean image (all ops off),
    so a replay store also serves clean training. Each further view applies one op of the strategy (aug_mode S),
    drawn per image (``view_ops: per_image``) or once per view."""
    generator = torch.Generator().manual_seed(cfg.view_seed)
    per_image = cfg.view_ops == "per_image"
    views = [torch.zeros(n, augment.NUM_PARAMS)]
    views += [
        augment.sample_params(
            n, image_size, generator, cfg.view_strategy, one_op=True, op_per_image=per_image
        )
        for _ in range(cfg.views - 1)
    ]
    return torch.stack(views, dim=1)


@dataclass(frozen=True)
class TeacherSource:
    """One trained teacher as extraction reads it: its config, manifest, checkpoint folder, epochs and layers."""

    config: TeacherConfig
    manifest: dict
    folder: Path
    epochs: list[int]
    layers: list[str]


def extract_to_store(
    synthetic: SyntheticSet,
    teachers: list[TeacherSource],
    store_path: str | Path,
    cfg: ExtractConfig,
    device: torch.device,
) -> list[str]:
    """Write features and logits of every teacher x epoch x layer x view into the store; returns the array paths."""
    prepare_store(synthetic, teachers, store_path, cfg)
    written = []
    for teacher in teachers:
        for epoch in teacher.epochs:
            written += extract_epoch(synthetic, teacher, store_path, epoch, cfg, device)
    writer.seal_store(store_path)
    return written


def prepare_store(
    synthetic: SyntheticSet, teachers: list[TeacherSource], store_path: str | Path, cfg: ExtractConfig
) -> None:
    """The store's root (images, labels, provenance), every teacher's group and its stored views' parameters: what
    every epoch's extraction writes under. The epochs can then be extracted in any order or in parallel."""
    writer.create_store(
        store_path,
        synthetic.images.numpy(),
        synthetic.labels.numpy(),
        dataset=synthetic.dataset,
        num_classes=synthetic.num_classes,
        normalization=synthetic.normalization,
        version=__version__,
    )
    for teacher in teachers:
        writer.write_teacher(
            store_path,
            teacher.config.id,
            {
                "arch": teacher.config.arch,
                "arch_kwargs": teacher.config.arch_kwargs,
                "trained_on": teacher.manifest["trained_on"],
                "seed": teacher.manifest["seed"],
            },
        )
        if cfg.views > 1:
            writer.write_views(
                store_path,
                teacher.config.id,
                view_params(len(synthetic.images), cfg, synthetic.images.shape[-1]).numpy(),
                {
                    "fields": list(augment.FIELDS),
                    "seed": cfg.view_seed,
                    "strategy": cfg.view_strategy,
                    "ops": cfg.view_ops,
                    "view0": "clean",
                },
            )


def extract_epoch(
    synthetic: SyntheticSet,
    teacher: TeacherSource,
    store_path: str | Path,
    epoch: int,
    cfg: ExtractConfig,
    device: torch.device,
    build_key: str | None = None,
) -> list[str]:
    """One checkpoint's features at every layer and view (one forward pass per view serves all layers) into the
    prepared store; the epoch's arrays are marked complete last. With ``build_key`` a killed extraction resumes:
    complete epochs are kept, a partial one continues after its last written chunk. Returns the array paths."""
    teacher_cfg, layers = teacher.config, teacher.layers
    images = synthetic.images
    n, image_shape = len(images), tuple(images.shape[1:])
    policy = "replay" if cfg.views > 1 else "clean"
    params = view_params(n, cfg, image_shape[-1])
    model, digest = teacher_at(
        teacher_cfg, teacher.folder, teacher.manifest, epoch, image_shape, synthetic.num_classes, device
    )
    shapes = {layer: tuple(model.feature_shape(image_shape, layer)) for layer in layers}
    out = writer.EpochWriter(
        store_path,
        teacher_cfg.id,
        epoch,
        digest,
        n,
        cfg.views,
        shapes,
        synthetic.num_classes,
        policy,
        cfg.dtype,
        cfg.codec,
        build_key,
    )
    written = [f"{teacher_cfg.id}/epoch_{epoch:04d}/{layer}" for layer in layers]
    if out.finished:
        log.info("extract teacher %s epoch %d: complete arrays kept", teacher_cfg.id, epoch)
        return written
    if out.done:
        log.info(
            "extract teacher %s epoch %d: resuming after %d of %d images", teacher_cfg.id, epoch, out.done, n
        )
    batch = min(cfg.batch_size, inference_batch(device))
    for start in range(out.done, n, out.chunk):
        block = slice(start, min(n, start + out.chunk))
        # View by view (all views in one batch gave other float16 roundings and was not faster, measured).
        per_view = [
            teacher_features(model, augment.apply(images[block], params[block, v]), layers, device, batch)
            for v in range(cfg.views)
        ]
        out.write(
            start,
            {layer: np.stack([f[layer] for f, _ in per_view], axis=1) for layer in layers},
            np.stack([logits for _, logits in per_view], axis=1),
        )
    out.close()
    log.info(
        "extract teacher %s epoch %d: %d images x %d views, %s",
        teacher_cfg.id,
        epoch,
        n,
        cfg.views,
        ", ".join(f"{k} {v}" for k, v in shapes.items()),
    )
    return written
