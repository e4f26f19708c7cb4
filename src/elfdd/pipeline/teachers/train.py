"""Teacher training on real data with checkpoints at chosen epochs and a manifest (sha256, accuracy per epoch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from ...core.errors import BadInput, NumericalFault
from ...core.io import atomic_torch_save, atomic_write_json, load_failure, load_json, sha256_file
from ...models import SplitNet, create_model
from .. import augment
from ..data import DataSplits
from ..resume import NO_RESUME, ResumePoint, rng_state, set_rng_state
from ..training import NonFiniteWatch, autocast, evaluate, log, seed_everything, sgd_with_half_decay

if TYPE_CHECKING:  # config types only in annotations: the config imports this registry
    from ..config import TeacherConfig


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.pt"


def build_teacher(cfg: TeacherConfig, image_shape: tuple[int, ...], num_classes: int) -> SplitNet:
    return create_model(cfg.arch, image_shape[0], num_classes, image_shape[-1], **cfg.arch_kwargs)


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    batch_size: int,
    dsa: bool,
    generator: torch.Generator,
    device: torch.device,
    precision: str,
    where: str = "network",
) -> float:
    """One epoch of cross-entropy training in a seeded order (DSA on each batch when ``dsa``); the train accuracy.
    A NaN or Inf loss stops it at the end of the epoch with a NumericalFault naming ``where``; the loss and the
    accuracy stay on the device until then (no host sync per step)."""
    model.train()
    order = torch.randperm(len(y_train), generator=generator)
    correct = torch.zeros((), dtype=torch.long, device=device)
    watch = NonFiniteWatch(("loss",), device)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        x, y = x_train[batch].to(device), y_train[batch].to(device)
        if dsa:
            x, _ = augment.augment(x, generator)
        with autocast(device, precision):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        watch.update({"loss": loss}, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == (y.argmax(1) if y.ndim == 2 else y)).sum()  # soft labels: their class
    fault = watch.first()
    if fault is not None:
        raise NumericalFault(f"{where}: cross-entropy loss is {fault[2]} (diverged)")
    return int(correct) / len(y_train)


def train_teacher(
    data: DataSplits,
    cfg: TeacherConfig,
    out_dir: Path,
    device: torch.device,
    precision: str,
    seed: int,
    resume: ResumePoint = NO_RESUME,
) -> dict[str, Any]:
    """Train ``cfg.arch`` on the real training split; write ``out_dir/epoch_EEEE.pt`` and ``manifest.json``.
    After every epoch the training state goes to ``resume``; a killed run continues from there (its checkpoints
    kept) and ends with the same weights."""
    generator = seed_everything(seed)
    model = build_teacher(cfg, data.image_shape, data.num_classes).to(device)
    optimizer, scheduler = sgd_with_half_decay(
        model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay, cfg.epochs
    )
    x_train, y_train = data.x_train, data.y_train
    if cfg.train_subset is not None and cfg.train_subset < len(y_train):
        keep = torch.randperm(len(y_train), generator=generator)[: cfg.train_subset]
        x_train, y_train = x_train[keep], y_train[keep]
    manifest: dict[str, Any] = {
        "teacher_id": cfg.id,
        "arch": cfg.arch,
        "arch_kwargs": cfg.arch_kwargs,
        "config": cfg.model_dump(mode="json"),
        "trained_on": {
            "dataset": data.name,
            "train_size": len(y_train),
            "normalization": data.normalization(),
        },
        "seed": seed,
        # The schedule: constant lr up to this epoch, then x0.1 (the reference takes its checkpoint here).
        "constant_phase_end": max(1, cfg.epochs // 2),
        "history": [],
        "checkpoints": [],
    }

    def checkpoint(epoch: int, train_acc: float | None, test_acc: float) -> None:
        path = out_dir / checkpoint_name(epoch)
        atomic_torch_save(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        manifest["checkpoints"].append(
            {
                "epoch": epoch,
                "file": path.name,
                "sha256": sha256_file(path),
                "train_acc": train_acc,
                "test_acc": test_acc,
            }
        )
        atomic_write_json(out_dir / "manifest.json", manifest)

    start = 0
    restored = resume.load()
    if restored is not None:
        start, state = restored
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(generator, state["rng"])
        manifest = json.loads(state["manifest"])
    elif 0 in cfg.checkpoint_epochs:
        checkpoint(0, None, evaluate(model, data.x_test, data.y_test, device, precision))
    for epoch in range(start + 1, cfg.epochs + 1):
        train_acc = train_epoch(
            model,
            optimizer,
            x_train,
            y_train,
            cfg.batch_size,
            cfg.dsa,
            generator,
            device,
            precision,
            f"teacher {cfg.id} epoch {epoch}",
        )
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        test_acc = evaluate(model, data.x_test, data.y_test, device, precision)
        manifest["history"].append({"epoch": epoch, "lr": lr, "train_acc": train_acc, "test_acc": test_acc})
        log.info(
            "teacher %s epoch %d/%d train %.4f test %.4f",
            *(cfg.id, epoch, cfg.epochs, train_acc, test_acc),
            extra={"progress": (f"teacher {cfg.id}", epoch, cfg.epochs)},
        )
        if epoch in cfg.checkpoint_epochs:
            checkpoint(epoch, train_acc, test_acc)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(generator),
            "manifest": json.dumps(manifest),
        }
        resume.save(epoch, state)
    manifest["complete"] = True
    atomic_write_json(out_dir / "manifest.json", manifest)
    resume.clear()
    return manifest


def load_manifest(teacher_dir: Path) -> dict[str, Any]:
    manifest = load_json(teacher_dir / "manifest.json", "teacher manifest")
    if not manifest.get("complete"):
        raise BadInput(
            f"teacher manifest {teacher_dir / 'manifest.json'} is not complete (teacher training did not finish)"
        )
    return manifest


def load_checkpoint(
    teacher_dir: Path, manifest: dict[str, Any], epoch: int
) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint's state_dict, after checking its sha256 against the manifest; returns (state, sha256)."""
    entry = next((c for c in manifest["checkpoints"] if c["epoch"] == epoch), None)
    if entry is None:
        saved = [c["epoch"] for c in manifest["checkpoints"]]
        raise BadInput(
            f"teacher {manifest['teacher_id']} has no checkpoint for epoch {epoch} (saved: {saved})"
        )
    path = teacher_dir / entry["file"]
    if not path.is_file():
        raise BadInput(f"checkpoint missing: {path}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise BadInput(f"checkpoint {path} does not match the sha256 in its manifest (damaged or replaced)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"checkpoint {path} cannot be loaded: {load_failure(exc)}") from None
    return state, digest


def teacher_at(
    cfg: TeacherConfig,
    teacher_dir: Path,
    manifest: dict[str, Any],
    epoch: int,
    image_shape: tuple[int, ...],
    num_classes: int,
    device: torch.device,
) -> tuple[SplitNet, str]:
    """The teacher network with its checkpoint of ``epoch`` loaded (sha256-checked), on ``device``, in eval mode."""
    model = build_teacher(cfg, image_shape, num_classes).to(device)
    state, digest = load_checkpoint(teacher_dir, manifest, epoch)
    model.load_state_dict(state)
    return model.eval(), digest


def checkpoint_problems(folder: Path) -> list[str]:
    """Each checkpoint of a teacher folder that is missing or no longer has the sha256 of its manifest."""
    manifest = folder / "manifest.json"
    try:
        entries = load_json(manifest, "teacher manifest")["checkpoints"]
        return [
            f"checkpoint {folder / e['file']} is missing or does not match the sha256 in its manifest"
            for e in entries
            if not (folder / e["file"]).is_file() or sha256_file(folder / e["file"]) != e["sha256"]
        ]
    except (BadInput, KeyError, TypeError) as exc:
        return [f"teacher manifest {manifest} is damaged: {exc}"]
