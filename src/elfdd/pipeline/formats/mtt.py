"""MTT / DATM / FTD: ``images_best.pt`` and ``labels_best.pt`` (tensors, as ``torch.save(image_syn.cpu())`` in
MTT's distill.py: images normalised with the dataset's mean/std, ZCA-whitened when run with ``--zca``), and the
learned student learning rate ``lr_best.pt`` when present (kept as the set's ``syn_lr``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...core.errors import BadInput
from ...core.io import atomic_torch_save
from .registry import Format, RawSet, load_tensors, register_format, tensor_of

NAMES = ("images_best.pt", "labels_best.pt", "lr_best.pt")


def _files(paths: list[Path]) -> dict[str, Path]:
    """The set's files by name: given one by one, or the folder that holds them; a file given alone (e.g.
    ``images_best.pt``) brings the other files of its folder with it."""
    found: dict[str, Path] = {}
    for path in paths:
        for candidate in sorted(path.iterdir()) if path.is_dir() else [path]:
            if candidate.name in NAMES:
                found[candidate.name] = candidate
    for path in paths:
        for sibling in sorted(path.parent.iterdir()) if path.is_file() else []:
            if sibling.name in NAMES:
                found.setdefault(sibling.name, sibling)
    missing = [n for n in NAMES[:2] if n not in found]
    if missing:
        raise BadInput(f"MTT set: {', '.join(missing)} not found in {', '.join(map(str, paths))}")
    return found


def read(paths: list[Path], options: dict[str, Any]) -> RawSet:
    files = _files(paths)
    images = tensor_of(load_tensors(files["images_best.pt"], "MTT images"), "images_best.pt")
    labels = tensor_of(load_tensors(files["labels_best.pt"], "MTT labels"), "labels_best.pt")
    extra = {}
    if "lr_best.pt" in files:
        lr = tensor_of(load_tensors(files["lr_best.pt"], "MTT learning rate"), "lr_best.pt")
        if lr.numel() != 1 or not torch.isfinite(lr).all() or float(lr) <= 0:
            raise BadInput(f"MTT set: {files['lr_best.pt']} holds no positive learning rate")
        extra["syn_lr"] = float(lr)
    return RawSet(images, labels, "normalized", list(files.values()), extra)


def write(synthetic, out: Path) -> list[Path]:
    """``out/images_best.pt``, ``labels_best.pt`` (and ``lr_best.pt`` for a set with a learned lr), as MTT saves."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "images_best.pt", out / "labels_best.pt"]
    atomic_torch_save(written[0], synthetic.images.detach().float().cpu().contiguous())
    atomic_torch_save(written[1], synthetic.labels.detach().cpu().contiguous())
    if synthetic.extra.get("syn_lr") is not None:
        written.append(out / "lr_best.pt")
        atomic_torch_save(written[2], torch.tensor(float(synthetic.extra["syn_lr"])))
    return written


def claims(path: Path) -> bool:
    return path.name in NAMES or (path.is_dir() and (path / "images_best.pt").exists())


register_format("mtt", Format(read, claims, write))
