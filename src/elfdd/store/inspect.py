"""``elfdd inspect``: feature statistics computed lazily with dask, xarray views with named dims, PNG plots.

Every reduction runs in float32 (float16 sums overflow) and the arrays are read chunk by chunk, so
stores larger than memory are inspected without loading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from ..core.errors import BadInput
from ..core.io import save_figure
from .chunks import damaged_contents
from .layout import feature_path, hard_labels
from .reader import FeatureStore


def open_features(path: str | Path, teacher_id: str, epoch: int, layer: str):
    """One feature array as an ``xarray.DataArray`` with dims (sample, view, channel, y, x), read lazily."""
    import xarray as xr

    store = FeatureStore(path)
    array = store.features(teacher_id, epoch, layer)
    _, labels = store.synthetic()
    return xr.DataArray(
        _lazy(store, teacher_id, epoch, layer),
        dims=getattr(array.metadata, "dimension_names", None),
        coords={"label": ("sample", hard_labels(labels))},
        name=layer,
        attrs=dict(array.attrs),
    )


def open_view_params(path: str | Path, teacher_id: str):
    """The (sample, view, param) augmentation parameters of a replay store as an ``xarray.DataArray``, or None."""
    import xarray as xr

    params = FeatureStore(path).view_params(teacher_id)
    if params is None:
        return None
    fields = params.attrs.get("fields", list(range(params.shape[2])))
    return xr.DataArray(
        da.from_zarr(params),
        dims=("sample", "view", "param"),
        coords={"param": fields},
        attrs=dict(params.attrs),
    )


def _lazy(store: FeatureStore, teacher_id: str, epoch: int, layer: str) -> da.Array:
    store.features(teacher_id, epoch, layer)  # refuses a missing or incomplete array
    return da.from_zarr(store.path, component=feature_path(teacher_id, epoch, layer))


def _flat(x: da.Array) -> da.Array:
    """(sample, view, ...) float16/32 -> (sample*view, features) float32."""
    return x.astype(np.float32).reshape(x.shape[0] * x.shape[1], -1)


def _array_stats(x: da.Array, labels: np.ndarray, num_classes: int) -> dict[str, da.Array]:
    """Lazy per-channel mean/std, sparsity, mean L2 norm and the per-class statistics of the centroid separation."""
    x32 = x.astype(np.float32)
    axes = tuple(i for i in range(x.ndim) if i != 2)
    flat = _flat(x)
    sample_labels = np.repeat(labels, x.shape[1])
    onehot = np.eye(num_classes, dtype=np.float32)[sample_labels]  # (samples*views, K), small
    onehot = da.from_array(onehot, chunks=(flat.chunks[0], num_classes))
    return {
        "channel_mean": x32.mean(axis=axes),
        "channel_std": x32.std(axis=axes),
        "sparsity": (x == 0).mean(),
        "mean_norm": da.sqrt((flat**2).sum(axis=1)).mean(),
        "class_count": onehot.sum(axis=0),
        "class_sum": onehot.T @ flat,  # (K, D)
        "class_sq": onehot.T @ (flat**2).sum(axis=1),  # (K,)
    }


def centroid_separation(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> float:
    """Mean distance between class centroids over the mean within-class RMS distance to the own centroid."""
    present = count > 0
    centroids = total[present] / count[present, None]
    within = np.sqrt(np.maximum(squares[present] / count[present] - (centroids**2).sum(axis=1), 0)).mean()
    k = len(centroids)
    if k < 2 or within == 0:
        return float("nan")
    gaps = np.sqrt(((centroids[:, None] - centroids[None]) ** 2).sum(axis=-1))
    return float(gaps[np.triu_indices(k, 1)].mean() / within)


def _centered(x: da.Array) -> da.Array:
    flat = _flat(x)
    return flat - flat.mean(axis=0)


def linear_cka(x: da.Array, y: da.Array) -> da.Array:
    """Linear CKA (Kornblith et al. 2019) of two (samples, ...) feature arrays over the same samples, in feature
    space: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), centred, so memory grows with the feature size, not N^2."""
    xc, yc = _centered(x), _centered(y)
    cross = ((yc.T @ xc) ** 2).sum()
    return cross / da.sqrt(((xc.T @ xc) ** 2).sum() * ((yc.T @ yc) ** 2).sum())


def feature_stats(path: str | Path) -> dict[str, Any]:
    """Per teacher, epoch and layer: shape, per-channel mean/std, sparsity, mean L2 norm, centroid separation; and
    per teacher and layer, the linear CKA between every pair of epochs. One dask graph, computed once."""
    store = FeatureStore(path)
    labels = hard_labels(store.synthetic()[1])
    num_classes = int(store.meta["num_classes"])
    entries: list[dict[str, Any]] = []
    cka_entries: list[dict[str, Any]] = []
    lazy, cka_lazy, feature_arrays = [], [], []
    for teacher in store.teachers():
        layers: dict[str, list[int]] = {}
        for epoch in store.epochs(teacher):
            for layer in store.layers(teacher, epoch):
                array = store.features(teacher, epoch, layer)
                feature_arrays.append(array)
                lazy.append(_array_stats(_lazy(store, teacher, epoch, layer), labels, num_classes))
                entries.append(
                    {
                        "teacher": teacher,
                        "epoch": epoch,
                        "layer": layer,
                        "shape": list(array.shape),
                        "dtype": str(array.dtype),
                        "view_policy": array.attrs.get("view_policy"),
                        "codec": array.attrs.get("codec"),
                    }
                )
                layers.setdefault(layer, []).append(epoch)
        for layer, epochs in layers.items():
            arrays = {e: _lazy(store, teacher, e, layer) for e in epochs}
            pairs = [(a, b) for i, a in enumerate(epochs) for b in epochs[i + 1 :]]
            cka_entries.append({"teacher": teacher, "layer": layer, "epochs": epochs, "pairs": pairs})
            cka_lazy.append([linear_cka(arrays[a], arrays[b]) for a, b in pairs])
    store.refuse_damaged_chunks(*feature_arrays, contents=False)  # zarr would read a missing chunk as NaN
    try:
        computed, cka_values = dask.compute(lazy, cka_lazy)
    except Exception as exc:  # a chunk that does not decode (a flipped byte fails its checksum): name it
        found = next((p for a in feature_arrays for p in damaged_contents(a)), str(exc).splitlines()[0])
        raise BadInput(f"store {store.path}: {found}; run elfdd verify {store.path}") from None
    for entry, values in zip(entries, computed, strict=True):
        entry["channel_mean"] = [round(float(v), 5) for v in values["channel_mean"]]
        entry["channel_std"] = [round(float(v), 5) for v in values["channel_std"]]
        entry["sparsity"] = round(float(values["sparsity"]), 5)
        entry["mean_norm"] = round(float(values["mean_norm"]), 5)
        separation = centroid_separation(values["class_count"], values["class_sum"], values["class_sq"])
        entry["centroid_separation"] = round(separation, 5) if np.isfinite(separation) else None
    cka = []
    for entry, values in zip(cka_entries, cka_values, strict=True):
        epochs = entry["epochs"]
        matrix = np.eye(len(epochs))
        for (a, b), value in zip(entry["pairs"], values, strict=True):
            i, j = epochs.index(a), epochs.index(b)
            matrix[i, j] = matrix[j, i] = float(value)
        cka.append(
            {
                "teacher": entry["teacher"],
                "layer": entry["layer"],
                "epochs": epochs,
                "linear_cka": np.round(matrix, 5).tolist(),
            }
        )
    return {"store": store.path, "arrays": entries, "cka": cka}


def format_stats(stats: dict[str, Any]) -> str:
    lines = [
        f"{'teacher':<12} {'epoch':>5} {'layer':<10} {'shape':<24} {'mean':>8} {'std':>8} {'sparsity':>8} "
        f"{'norm':>9} {'separation':>10}"
    ]
    for e in stats["arrays"]:
        separation = e["centroid_separation"]
        lines.append(
            f"{e['teacher']:<12} {e['epoch']:>5} {e['layer']:<10} {str(tuple(e['shape'])):<24} "
            f"{np.mean(e['channel_mean']):>8.4f} {np.mean(e['channel_std']):>8.4f} {e['sparsity']:>8.4f} "
            f"{e['mean_norm']:>9.3f} {separation if separation is None else f'{separation:.3f}':>10}"
        )
    for c in stats["cka"]:
        if len(c["epochs"]) > 1:
            lines.append(
                f"linear CKA between epochs {c['epochs']}, teacher {c['teacher']}, layer {c['layer']}:"
            )
            lines += ["  " + " ".join(f"{v:7.4f}" for v in row) for row in c["linear_cka"]]
    return "\n".join(lines)


def plot_stats(stats: dict[str, Any], out: Path) -> list[Path]:
    """Per teacher and layer: per-channel mean/std by epoch, and the epoch x epoch CKA heat map, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in stats["arrays"]:
        groups.setdefault((e["teacher"], e["layer"]), []).append(e)
    for (teacher, layer), entries in groups.items():
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for e in entries:
            axes[0].plot(e["channel_mean"], lw=0.8, label=f"epoch {e['epoch']}")
            axes[1].plot(e["channel_std"], lw=0.8, label=f"epoch {e['epoch']}")
        axes[0].set(title=f"{teacher}/{layer}: channel mean", xlabel="channel")
        axes[1].set(title="channel std", xlabel="channel")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        written.append(out / f"channels_{teacher}_{layer}.png")
        save_figure(fig, written[-1], dpi=110)
        plt.close(fig)
    for c in stats["cka"]:
        fig, ax = plt.subplots(figsize=(3.8, 3.4))
        matrix = np.array(c["linear_cka"])
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for (i, j), value in np.ndenumerate(matrix):  # four decimals: CKA near 1 differs in the third
            ax.text(
                j,
                i,
                f"{value:.4f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.6 else "black",
            )
        ticks = range(len(c["epochs"]))
        ax.set_xticks(ticks, c["epochs"])
        ax.set_yticks(ticks, c["epochs"])
        ax.set(title=f"linear CKA {c['teacher']}/{c['layer']}", xlabel="epoch", ylabel="epoch")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        written.append(out / f"cka_{c['teacher']}_{c['layer']}.png")
        save_figure(fig, written[-1], dpi=110)
        plt.close(fig)
    return written
