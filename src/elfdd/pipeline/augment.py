"""DSA differentiable augmentation (Zhao & Bilen 2021) with sampled parameters that can be stored and replayed.

Every call first samples a parameter matrix ``params`` of shape (N, P) with one row per image, then
``apply(x, params)`` is a pure function of the images and that matrix. Replaying a stored matrix therefore
reproduces the augmentation exactly, which view-consistent teacher features need.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "_".join(OPS)

# Reference hyper-parameters (ParamDiffAug).
BRIGHTNESS, SATURATION, CONTRAST = 1.0, 2.0, 0.5
RATIO_CROP_PAD, RATIO_CUTOUT, PROB_FLIP, RATIO_SCALE, RATIO_ROTATE = 0.125, 0.5, 0.5, 1.2, 15.0

# Column layout of a parameter row: one on/off flag per op, then the op parameters.
FIELDS = OPS + (
    "brightness",  # additive shift
    "saturation",  # factor
    "contrast",  # factor
    "crop_dx",  # integer translation in pixels
    "crop_dy",
    "cutout_x",  # centre of the cut square, pixels
    "cutout_y",
    "mirror",  # 1 = flip horizontally (when the flip op is on)
    "scale_x",
    "scale_y",
    "rotate_rad",
)
COL = {name: i for i, name in enumerate(FIELDS)}
NUM_PARAMS = len(FIELDS)


def parse_strategy(strategy: str) -> tuple[str, ...]:
    ops = tuple(strategy.split("_")) if strategy else ()
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown DSA ops {unknown}; choose from {list(OPS)}")
    return ops


def sample_params(
    n: int,
    image_size: int,
    generator: torch.Generator,
    strategy: str = DEFAULT_STRATEGY,
    one_op: bool = True,
    op_per_image: bool = False,
) -> torch.Tensor:
    """Sample a (n, P) float32 parameter matrix.

    ``one_op=True`` is the reference's ``aug_mode='S'``: one op of the strategy is picked for the whole call,
    with per-sample parameters; with ``op_per_image`` each image draws its own op. ``one_op=False`` applies every
    op of the strategy in order.
    """
    ops = parse_strategy(strategy)
    params = torch.zeros(n, NUM_PARAMS)
    if not ops:
        return params
    if one_op and op_per_image:
        picks = torch.randint(len(ops), (n,), generator=generator)
        for i, op in enumerate(ops):
            params[:, COL[op]] = (picks == i).float()
    else:
        chosen = [ops[int(torch.randint(len(ops), (1,), generator=generator))]] if one_op else list(ops)
        for op in chosen:
            params[:, COL[op]] = 1.0
    u = lambda: torch.rand(n, generator=generator)  # noqa: E731
    params[:, COL["brightness"]] = (u() - 0.5) * BRIGHTNESS
    params[:, COL["saturation"]] = u() * SATURATION
    params[:, COL["contrast"]] = u() + CONTRAST
    shift = int(image_size * RATIO_CROP_PAD + 0.5)
    params[:, COL["crop_dx"]] = torch.randint(-shift, shift + 1, (n,), generator=generator).float()
    params[:, COL["crop_dy"]] = torch.randint(-shift, shift + 1, (n,), generator=generator).float()
    cut = int(image_size * RATIO_CUTOUT + 0.5)
    params[:, COL["cutout_x"]] = torch.randint(
        0, image_size + (1 - cut % 2), (n,), generator=generator
    ).float()
    params[:, COL["cutout_y"]] = torch.randint(
        0, image_size + (1 - cut % 2), (n,), generator=generator
    ).float()
    params[:, COL["mirror"]] = (u() < PROB_FLIP).float()
    params[:, COL["scale_x"]] = u() * (RATIO_SCALE - 1.0 / RATIO_SCALE) + 1.0 / RATIO_SCALE
    params[:, COL["scale_y"]] = u() * (RATIO_SCALE - 1.0 / RATIO_SCALE) + 1.0 / RATIO_SCALE
    params[:, COL["rotate_rad"]] = (u() - 0.5) * 2 * RATIO_ROTATE / 180 * math.pi
    return params


def _color(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    x = x + p[:, COL["brightness"]].view(-1, 1, 1, 1).to(x.dtype)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * p[:, COL["saturation"]].view(-1, 1, 1, 1).to(x.dtype) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * p[:, COL["contrast"]].view(-1, 1, 1, 1).to(x.dtype) + mean


def _crop(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Integer translation with zero padding, as the reference's gather on a padded image."""
    n, _, h, w = x.shape
    dx = p[:, COL["crop_dx"]].long().view(n, 1, 1)
    dy = p[:, COL["crop_dy"]].long().view(n, 1, 1)
    grid_y = torch.arange(h, device=x.device).view(1, h, 1) + dy
    grid_x = torch.arange(w, device=x.device).view(1, 1, w) + dx
    valid = ((grid_y >= 0) & (grid_y < h) & (grid_x >= 0) & (grid_x < w)).unsqueeze(1)
    flat = (grid_y.clamp(0, h - 1) * w + grid_x.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    shifted = x.flatten(2).gather(2, flat).view_as(x)
    return shifted * valid.to(x.dtype)


def _cutout(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    cut = int(w * RATIO_CUTOUT + 0.5)
    cy = p[:, COL["cutout_y"]].long().view(n, 1, 1) - cut // 2
    cx = p[:, COL["cutout_x"]].long().view(n, 1, 1) - cut // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= cy) & (ys < cy + cut) & (xs >= cx) & (xs < cx + cut)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _flip(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    flip = p[:, COL["mirror"]].view(-1, 1, 1, 1) > 0.5
    return torch.where(flip, x.flip(3), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.device, torch.float32), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid.to(x.dtype), align_corners=True)


def _scale(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    theta = torch.zeros(len(p), 2, 3, device=p.device)
    theta[:, 0, 0] = p[:, COL["scale_x"]]
    theta[:, 1, 1] = p[:, COL["scale_y"]]
    return _affine(x, theta)


def _rotate(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    angle = p[:, COL["rotate_rad"]]
    theta = torch.zeros(len(p), 2, 3, device=p.device)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), torch.sin(-angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    return _affine(x, theta)


_APPLY = {
    "color": _color,
    "crop": _crop,
    "cutout": _cutout,
    "flip": _flip,
    "scale": _scale,
    "rotate": _rotate,
}


def apply(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply the ops flagged in each row of ``params`` to the matching image, in the reference order."""
    if len(params) != len(x):
        raise ValueError(f"{len(params)} parameter rows for {len(x)} images")
    flags = (
        params.cpu()
    )  # which ops apply is decided on the host; the ops read their parameters on x's device
    params = params.to(x.device, non_blocking=True)
    for op in OPS:
        mask = flags[:, COL[op]] > 0.5
        if not bool(mask.any()):
            continue
        if bool(mask.all()):
            x = _APPLY[op](x, params)
        else:
            index = mask.nonzero().squeeze(1).to(x.device)
            x = x.index_copy(0, index, _APPLY[op](x.index_select(0, index), params.index_select(0, index)))
    return x


def augment(
    x: torch.Tensor, generator: torch.Generator, strategy: str = DEFAULT_STRATEGY, one_op: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch; returns the augmented images and the parameters that reproduce them."""
    params = sample_params(len(x), x.shape[-1], generator, strategy, one_op)
    return apply(x, params), params


def siamese_params(
    n_first: int, n_second: int, image_size: int, generator: torch.Generator, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters for two batches augmented "the same way" (DC/DSA/DM's shared seed): same op, rows shared by prefix."""
    params = sample_params(max(n_first, n_second), image_size, generator, **kwargs)
    return params[:n_first], params[:n_second]
