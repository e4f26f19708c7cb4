"""``elfdd inspect``: feature statistics computed lazily with dask, and xarray views with named dims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from .layout import feature_path
from .reader import FeatureStore


def open_features(path: str | Path, teacher_id: str, epoch: int, layer: str):
    """One feature array as an ``xarray.DataArray`` with dims (sample, view, channel, y, x), read lazily."""
    import xarray as xr

    store = FeatureStore(path)
    array = store.features(teacher_id, epoch, layer)
    data = da.from_zarr(str(store.path), component=feature_path(teacher_id, epoch, layer))
    _, labels = store.synthetic()
    return xr.DataArray(
        data,
        dims=array.metadata.dimension_names,
        coords={"label": ("sample", labels)},
        name=layer,
        attrs=dict(array.attrs),
    )


def feature_stats(path: str | Path) -> list[dict[str, Any]]:
    """Per teacher, epoch and layer: shape, per-channel mean/std, sparsity and mean L2 norm (float16 reduced in float32)."""
    store = FeatureStore(path)
    entries, lazy = [], []
    for teacher in store.teachers():
        for epoch in store.epochs(teacher):
            for layer in store.layers(teacher, epoch):
                array = store.features(teacher, epoch, layer)
                x = da.from_zarr(str(store.path), component=feature_path(teacher, epoch, layer)).astype(
                    np.float32
                )
                axes = tuple(i for i in range(x.ndim) if i != 2)
                per_sample = x.reshape(x.shape[0] * x.shape[1], -1)
                lazy.append(
                    {
                        "channel_mean": x.mean(axis=axes),
                        "channel_std": x.std(axis=axes),
                        "sparsity": (x == 0).mean(),
                        "mean_norm": da.sqrt((per_sample**2).sum(axis=1)).mean(),
                    }
                )
                entries.append(
                    {
                        "teacher": teacher,
                        "epoch": epoch,
                        "layer": layer,
                        "shape": list(array.shape),
                        "dtype": str(array.dtype),
                    }
                )
    (computed,) = dask.compute(lazy)
    for entry, values in zip(entries, computed, strict=True):
        entry["channel_mean"] = [round(float(v), 5) for v in values["channel_mean"]]
        entry["channel_std"] = [round(float(v), 5) for v in values["channel_std"]]
        entry["sparsity"] = round(float(values["sparsity"]), 5)
        entry["mean_norm"] = round(float(values["mean_norm"]), 5)
    return entries


def format_stats(entries: list[dict[str, Any]]) -> str:
    lines = [
        f"{'teacher':<12} {'epoch':>5} {'layer':<10} {'shape':<22} {'mean':>8} {'std':>8} {'sparsity':>8} {'norm':>9}"
    ]
    for e in entries:
        lines.append(
            f"{e['teacher']:<12} {e['epoch']:>5} {e['layer']:<10} {str(tuple(e['shape'])):<22} "
            f"{np.mean(e['channel_mean']):>8.4f} {np.mean(e['channel_std']):>8.4f} {e['sparsity']:>8.4f} {e['mean_norm']:>9.3f}"
        )
    return "\n".join(lines)
