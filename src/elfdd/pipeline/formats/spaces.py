"""An imported set brought into the run's input space and checked against the run's dataset. Spaces: ``pixel``
(0-1 floats, or 0-255 integers), ``normalized`` (the dataset's mean/std, as DC and MTT save), ``zca`` (normalised
and then whitened with the run's ZCA statistics, given as the statistics file). The run's space is normalised, then
ZCA when ``data.zca`` is on; a set is converted once and the conversion recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...core.errors import BadInput
from ...core.io import sha256_file
from ...store.layout import hard_labels
from ..synthetic import SyntheticSet

# How far outside the normalised range of real pixels a distilled image may go before it is taken for another
# space: distilled images drift past the real range (DM at IPC 10 reaches about 2x), never by 10x.
NORMALIZED_SLACK = 10.0
# Float pixels computed back from normalised ones land a rounding error outside 0..1.
PIXEL_ROUNDING = 1e-4


def import_set(raw, data, options: dict[str, Any]) -> SyntheticSet:
    """``raw`` (formats.RawSet) as a SyntheticSet of the run's dataset ``data`` (pipeline.data.DataSplits), or a
    one-line BadInput naming what cannot belong to it."""
    space = options.get("space") or "auto"
    if space == "auto":
        space = raw.space
    if space is None:
        raise BadInput(
            "this format does not say which space its images live in: give --space pixel, normalized or zca "
            "(config: distill.source.space)"
        )
    images = _channels_first(raw.images, data.image_shape)
    if not torch.isfinite(images.float()).all():
        raise BadInput("the imported images hold NaN or Inf values")
    labels, label_kind = _labels(raw.labels, len(images), data.num_classes)
    images = _to_run_space(images, space, data, options)
    counts = torch.bincount(hard_labels(labels), minlength=data.num_classes)
    if (counts == 0).any():
        empty = (counts == 0).nonzero().squeeze(1).tolist()
        raise BadInput(
            f"the imported set has no image of classes {empty} (images per class: {counts.tolist()}); "
            f"a distilled set of {data.name} needs every one of its {data.num_classes} classes"
        )
    return SyntheticSet(
        images=images.contiguous(),
        labels=labels,
        method="file",
        ipc=int(counts.max()),
        dataset=data.name,
        num_classes=data.num_classes,
        normalization=data.normalization(),
        extra={
            **raw.extra,
            "source": {
                "format": options.get("format"),
                "space": space,
                "files": [{"name": f.name, "sha256": sha256_file(f)} for f in raw.files],
                "images_per_class": counts.tolist(),
                "labels": label_kind,
            },
        },
    )


def _channels_first(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    channels, height, width = shape
    if images.ndim == 3 and channels == 1:
        images = images[:, None]
    if (
        images.ndim == 4
        and tuple(images.shape[1:]) != shape
        and tuple(images.shape[1:]) == (height, width, channels)
    ):
        images = images.permute(0, 3, 1, 2)
    if images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise BadInput(
            f"imported images have shape {tuple(images.shape)}, the dataset's are (N, {channels}, {height}, {width})"
        )
    if len(images) == 0:
        raise BadInput("the imported set holds no images")
    return images


def _labels(labels: torch.Tensor, n: int, num_classes: int) -> tuple[torch.Tensor, str]:
    """Hard labels (N,) int64 ("hard"), or soft labels (N, classes) as float32 probabilities: rows that are already
    distributions are taken as they are ("probabilities"), others (learned label logits, as DATM saves) through a
    softmax ("logits")."""
    if labels.ndim == 2 and labels.is_floating_point():
        return _soft_labels(labels, n, num_classes)
    if labels.ndim != 1 or len(labels) != n:
        raise BadInput(f"imported labels have shape {tuple(labels.shape)}, expected ({n},) for {n} images")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise BadInput("imported labels are fractional numbers, not class indices")
    labels = labels.long()
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise BadInput(
            f"imported labels span {int(labels.min())}..{int(labels.max())}, the dataset has classes 0..{num_classes - 1}"
        )
    return labels, "hard"


def _soft_labels(labels: torch.Tensor, n: int, num_classes: int) -> tuple[torch.Tensor, str]:
    if tuple(labels.shape) != (n, num_classes):
        raise BadInput(
            f"imported soft labels have shape {tuple(labels.shape)}, expected ({n}, {num_classes}) for {n} images "
            f"of {num_classes} classes"
        )
    labels = labels.float()
    if not torch.isfinite(labels).all():
        raise BadInput("the imported soft labels hold NaN or Inf values")
    if (labels >= 0).all() and torch.allclose(labels.sum(1), torch.ones(n), atol=1e-3):
        return labels / labels.sum(1, keepdim=True), "probabilities"
    return torch.softmax(labels, dim=1), "logits"


def _to_run_space(images: torch.Tensor, space: str, data, options: dict[str, Any]) -> torch.Tensor:
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    if space == "pixel":
        images = _unit_pixels(images)
        images = (images - mean) / std
    elif space == "normalized":
        low, high = (0 - mean) / std, (1 - mean) / std
        bound = NORMALIZED_SLACK * float(torch.maximum(low.abs(), high.abs()).max())
        peak = float(images.float().abs().max())
        if peak > bound:
            raise BadInput(
                f"imported images reach {peak:.1f}, beyond any normalised image of {data.name} (|x| <= {bound:.1f}); "
                "are they pixels (distill.source.space pixel)?"
            )
        images = images.float()
    elif space == "zca":
        return _whitened(images.float(), data, options)
    else:
        raise BadInput(f"unknown image space {space!r}; one of pixel, normalized, zca")
    return data.zca(images) if data.zca is not None else images


def _unit_pixels(images: torch.Tensor) -> torch.Tensor:
    low, high = float(images.min()), float(images.max())
    if low < -PIXEL_ROUNDING or high > 255:
        raise BadInput(f"imported pixels span {low:g}..{high:g}; pixel space is 0..1 or 0..255")
    if images.dtype == torch.uint8 or high > 1 + PIXEL_ROUNDING:
        return images.float() / 255
    return images.float().clamp(0, 1)


def _whitened(images: torch.Tensor, data, options: dict[str, Any]) -> torch.Tensor:
    if data.zca is None:
        raise BadInput("the imported images are ZCA-whitened, but this run's data is not (set data.zca)")
    stats = options.get("zca")
    if not stats:
        raise BadInput(
            "space zca needs the ZCA statistics the images were whitened with (distill.source.zca)"
        )
    from .registry import load_tensors

    held = load_tensors(Path(stats), "ZCA statistics")
    if not isinstance(held, dict) or held.get("sha256") != data.zca.sha256:
        raise BadInput(
            f"the ZCA statistics {stats} are not this run's (sha256 {data.zca.sha256[:12]}): the images were "
            "whitened in another space"
        )
    return images


def to_pixels(synthetic: SyntheticSet) -> torch.Tensor:
    """The set's images as 0-1 pixels (a ZCA-whitened set has no pixels to go back to)."""
    if synthetic.normalization.get("zca_sha256"):
        raise BadInput("a ZCA-whitened set cannot be written as pixels; export it as mtt or npz")
    mean = torch.tensor(synthetic.normalization["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(synthetic.normalization["std"]).view(1, -1, 1, 1)
    return synthetic.images * std + mean
