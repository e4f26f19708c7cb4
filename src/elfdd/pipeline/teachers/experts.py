"""Expert trajectories for MTT: the teacher training loop in expert mode (plain SGD: no momentum, no weight decay,
constant lr, as MTT expects), a snapshot of the parameters after every epoch, stored once and reused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...core.errors import BadInput
from ...core.io import atomic_torch_save, atomic_write_json, json_sha256, load_json, sha256_file
from ...core.keyed import holds_key
from ...models import create_model
from ..data import DataSplits
from ..resume import ResumePoint
from ..training import evaluate, log
from .train import train_epoch

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import DistillConfig


def expert_key(cfg: DistillConfig, data: DataSplits, seed: int) -> str:
    """What the trajectories depend on; a stored set with another key is not reused."""
    what = {
        "arch": cfg.arch,
        "arch_kwargs": cfg.arch_kwargs,
        "mtt": cfg.mtt.model_dump(
            include={"experts", "expert_epochs", "expert_lr", "expert_batch", "expert_subset"}
        ),
        "dsa": cfg.dsa,
        "dataset": data.name,
        "train_size": len(data.y_train),
        "normalization": data.normalization(),
        "seed": seed,
    }
    return json_sha256(what)[:16]


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])


def record_experts(
    data: DataSplits, cfg: DistillConfig, out_dir: Path, device: torch.device, precision: str, seed: int
) -> dict[str, Any]:
    """Train ``cfg.mtt.experts`` networks on the real data and save each trajectory (epochs 0..E flat params)."""
    key = expert_key(cfg, data, seed)
    manifest_path = out_dir / "manifest.json"
    if holds_key(manifest_path, key, what="expert manifest"):
        manifest = load_json(manifest_path, "expert manifest")
        if manifest.get("complete"):
            log.info("experts: reusing %d trajectories in %s", len(manifest["trajectories"]), out_dir)
            return manifest
    mtt = cfg.mtt
    manifest = {"key": key, "arch": cfg.arch, "mtt": mtt.model_dump(), "seed": seed, "trajectories": []}
    generator = torch.Generator().manual_seed(seed + 7919)
    x_train, y_train = data.x_train, data.y_train
    if mtt.expert_subset is not None and mtt.expert_subset < len(y_train):
        keep = torch.randperm(len(y_train), generator=generator)[: mtt.expert_subset]
        x_train, y_train = x_train[keep], y_train[keep]
    channels, size = data.image_shape[0], data.image_shape[-1]
    # After every epoch: a killed recording keeps the finished experts and continues inside the one it was in. The
    # finished experts' point is small (the data-order generator, the manifest) and is kept apart from the one in
    # training (weights, optimiser, snapshots), so that it and the trajectories can be kept in git across sessions.
    finished, resume = ResumePoint(out_dir / "finished.pt", key), ResumePoint(out_dir / "resume.pt", key)
    first, inside = 0, None
    for point in (finished, resume):
        restored = point.load()
        if restored is None:
            continue
        step, state = restored
        expert = state.get(
            "expert", step
        )  # older resume points: saved after whole experts, step = experts done
        if expert < first:  # the one in training's point, left behind by a kill once its expert had finished
            continue
        first = expert
        generator.set_state(state["generator"])
        manifest = json.loads(state["manifest"])
        inside = state if state.get("epoch") else None
    for k in range(first, mtt.experts):
        torch.manual_seed(seed * 1000 + k)
        model = create_model(cfg.arch, channels, data.num_classes, size, **cfg.arch_kwargs).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=mtt.expert_lr, momentum=0, weight_decay=0)
        snapshots, start = [flat_params(model)], 1
        if inside is not None:
            model.load_state_dict(inside["model"])
            optimizer.load_state_dict(inside["optimizer"])
            snapshots, start, inside = list(inside["snapshots"]), inside["epoch"] + 1, None
        for epoch in range(start, mtt.expert_epochs + 1):
            train_acc = train_epoch(
                model, optimizer, x_train, y_train, mtt.expert_batch, cfg.dsa, generator, device, precision
            )
            snapshots.append(flat_params(model))
            log.info(
                "expert %d/%d epoch %d/%d train %.4f",
                *(k + 1, mtt.experts, epoch, mtt.expert_epochs, train_acc),
                extra={
                    "progress": ("experts", k * mtt.expert_epochs + epoch, mtt.experts * mtt.expert_epochs)
                },
            )
            if epoch < mtt.expert_epochs:
                state = {
                    "expert": k,
                    "epoch": epoch,
                    "generator": generator.get_state(),
                    "manifest": json.dumps(manifest),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "snapshots": torch.stack(snapshots),
                }
                resume.save(k * mtt.expert_epochs + epoch, state)
        path = out_dir / f"trajectory_{k:03d}.pt"
        atomic_torch_save(path, torch.stack(snapshots))
        test_acc = evaluate(model, data.x_test, data.y_test, device, precision)
        manifest["trajectories"].append(
            {"file": path.name, "sha256": sha256_file(path), "test_acc": test_acc}
        )
        atomic_write_json(manifest_path, manifest)
        state = {"expert": k + 1, "generator": generator.get_state(), "manifest": json.dumps(manifest)}
        finished.save((k + 1) * mtt.expert_epochs, state)
        resume.clear()
    manifest["complete"] = True
    atomic_write_json(manifest_path, manifest)
    finished.clear()
    return manifest


def load_trajectories(out_dir: Path, manifest: dict[str, Any]) -> list[torch.Tensor]:
    """Every trajectory, (epochs+1, P) float32, after checking its sha256."""
    trajectories = []
    for entry in manifest["trajectories"]:
        path = out_dir / entry["file"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise BadInput(f"expert trajectory {path} is missing or does not match its sha256")
        trajectories.append(torch.load(path, map_location="cpu", weights_only=True))
    return trajectories
