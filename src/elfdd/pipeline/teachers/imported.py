"""Teachers trained elsewhere (``teacher.source``): a ``state_dict`` file per checkpoint (``checkpoint``) or an MTT
expert buffer (``mtt_buffer``: ``replay_buffer_N.pt``, a list of trajectories, each a list of per-epoch parameter
lists in ``net.parameters()`` order, as MTT's buffer.py saves them and the ELF reference reads them). Every
imported checkpoint is mapped onto the registered architecture with its shapes checked, written as the run's own
``checkpoints/<id>/epoch_EEEE.pt`` and measured on the test split; the manifest (the trained teacher's schema, plus
``source``) is complete before any feature is extracted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...core.errors import BadInput
from ...core.io import atomic_torch_save, atomic_write_json, sha256_file
from ..config import TeacherConfig
from ..data import DataSplits
from ..formats.registry import load_tensors
from ..training import evaluate, log
from .train import build_teacher, checkpoint_name

_WRAPPERS = ("state_dict", "model", "net", "model_state_dict")


def import_teacher(
    data: DataSplits, cfg: TeacherConfig, out_dir: Path, device: torch.device, precision: str
) -> dict[str, Any]:
    """Write ``out_dir/epoch_EEEE.pt`` for every ``cfg.checkpoint_epochs`` entry from ``cfg.paths`` and the
    manifest with each checkpoint's test accuracy."""
    model = build_teacher(cfg, data.image_shape, data.num_classes)
    states = _imported_states(cfg, model)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = []
    for epoch, state in states:
        model.load_state_dict(state)
        test_acc = evaluate(model.to(device), data.x_test, data.y_test, device, precision)
        path = out_dir / checkpoint_name(epoch)
        atomic_torch_save(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        checkpoints.append(
            {
                "epoch": epoch,
                "file": path.name,
                "sha256": sha256_file(path),
                "train_acc": None,
                "test_acc": test_acc,
            }
        )
        log.info("teacher %s imported (%s) epoch %d: test %.4f", cfg.id, cfg.source, epoch, test_acc)
    manifest = {
        "teacher_id": cfg.id,
        "arch": cfg.arch,
        "arch_kwargs": cfg.arch_kwargs,
        "config": cfg.model_dump(mode="json"),
        "trained_on": {"dataset": data.name, "train_size": None, "normalization": data.normalization()},
        "seed": None,
        "constant_phase_end": max(e for e, _ in states),
        "history": [],
        "checkpoints": checkpoints,
        "source": {
            "kind": cfg.source,
            "files": [{"name": Path(p).name, "sha256": sha256_file(Path(p))} for p in cfg.paths],
            **({"trajectory": cfg.trajectory} if cfg.source == "mtt_buffer" else {}),
        },
        "complete": True,
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def _imported_states(cfg: TeacherConfig, model: torch.nn.Module) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """(epoch, state_dict of ``model``'s layout) per checkpoint epoch, all read and checked before anything is
    written."""
    if cfg.source == "checkpoint":
        return [
            (epoch, map_state_dict(model, _read_state_dict(Path(path)), f"{path}"))
            for epoch, path in zip(cfg.checkpoint_epochs, cfg.paths, strict=True)
        ]
    trajectory = _read_trajectory(Path(cfg.paths[0]), cfg.trajectory)
    states = []
    for epoch in cfg.checkpoint_epochs:
        if epoch >= len(trajectory):
            raise BadInput(
                f"{cfg.paths[0]}: trajectory {cfg.trajectory} has epochs 0..{len(trajectory) - 1}, "
                f"teacher.checkpoint_epochs asks for {epoch}"
            )
        where = f"{cfg.paths[0]} trajectory {cfg.trajectory} epoch {epoch}"
        states.append((epoch, map_parameters(model, trajectory[epoch], where)))
    return states


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = load_tensors(path, "teacher checkpoint")
    for wrapper in _WRAPPERS:  # {"state_dict": ...} and the like, as training scripts save them
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise BadInput(f"{path}: not a state_dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel's prefix


def _read_trajectory(path: Path, index: int) -> list[list[torch.Tensor]]:
    buffer = load_tensors(path, "MTT expert buffer")
    if not isinstance(buffer, list) or not buffer or not all(isinstance(t, list) and t for t in buffer):
        raise BadInput(
            f"{path}: not an MTT expert buffer (a list of trajectories, each a list of parameter lists)"
        )
    if index >= len(buffer):
        raise BadInput(f"{path}: teacher.trajectory {index} is out of range (the buffer holds {len(buffer)})")
    trajectory = buffer[index]
    if not all(
        isinstance(step, list) and all(isinstance(p, torch.Tensor) for p in step) for step in trajectory
    ):
        raise BadInput(f"{path}: trajectory {index} is not a list of per-epoch parameter lists")
    return trajectory


def map_state_dict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], where: str
) -> dict[str, torch.Tensor]:
    """``state`` in ``model``'s naming. The same names: taken by name. Other names (the DC/MTT ConvNet's
    ``features.N.*`` / ``classifier.*``): taken by position, which is the same layer order for the ConvNets, with
    every shape checked."""
    target = model.state_dict()
    if set(state) == set(target):
        pairs = [(name, state[name], name) for name in target]
    elif len(state) == len(target):
        pairs = [(name, tensor, source) for name, (source, tensor) in zip(target, state.items(), strict=True)]
    else:
        missing = sorted(set(target) - set(state))[:3]
        raise BadInput(
            f"{where}: {len(state)} tensors for the {len(target)} of the architecture and other names "
            f"(missing e.g. {missing})"
        )
    return {
        name: _fitted(tensor, target[name], f"{where}: {source} -> {name}") for name, tensor, source in pairs
    }


def map_parameters(model: torch.nn.Module, params: list[torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """A flat parameter list in ``model.parameters()`` order as a state_dict (the reference's reading of a
    buffer). Architectures with buffers (batch norm's running statistics) cannot be restored from it."""
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise BadInput(
            f"{where}: an MTT buffer holds parameters only and {type(model).__name__} has buffers "
            f"({buffers[0]}, ...); use an architecture without batch norm"
        )
    names = [name for name, _ in model.named_parameters()]
    if len(params) != len(names):
        raise BadInput(f"{where}: {len(params)} parameters for the {len(names)} of the architecture")
    target = model.state_dict()
    return {
        name: _fitted(p, target[name], f"{where}: parameter {i} -> {name}")
        for i, (name, p) in enumerate(zip(names, params, strict=True))
    }


def _fitted(tensor: torch.Tensor, like: torch.Tensor, where: str) -> torch.Tensor:
    if tuple(tensor.shape) != tuple(like.shape):
        raise BadInput(f"{where}: shape {tuple(tensor.shape)} does not fit {tuple(like.shape)}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise BadInput(f"{where}: holds NaN or Inf")
    return tensor.to(like.dtype)
