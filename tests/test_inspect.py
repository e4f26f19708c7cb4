"""``elfdd inspect``'s statistics: dask-computed in float32, centroid separation, linear CKA between epochs, plots."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from helpers import clean_store

from elfdd.store import writer
from elfdd.store.inspect import (
    centroid_separation,
    feature_stats,
    format_stats,
    linear_cka,
    open_features,
    open_view_params,
    plot_stats,
)


def _numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA through the n x n Gram matrices (the textbook form), for comparison."""
    x = x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(0)
    y = y.reshape(len(y), -1) - y.reshape(len(y), -1).mean(0)
    k, l_ = x @ x.T, y @ y.T
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


def test_linear_cka_matches_the_gram_form_and_its_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 6, 2, 2))
    y = rng.normal(size=(40, 1, 5, 2, 2))
    lazy = lambda a: da.from_array(a, chunks=(16, 1, -1, -1, -1))  # noqa: E731
    assert float(linear_cka(lazy(x), lazy(y))) == pytest.approx(_numpy_cka(x, y), rel=1e-4)
    assert float(linear_cka(lazy(x), lazy(3 * x + 1))) == pytest.approx(1.0, rel=1e-5)
    rotation, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    rotated = (x.reshape(40, -1) @ rotation).reshape(x.shape)
    assert float(linear_cka(lazy(x), lazy(rotated))) == pytest.approx(1.0, rel=1e-4)


def test_centroid_separation_grows_with_class_distance():
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    stats = []
    for spread in (0.1, 5.0):
        x = rng.normal(size=(60, 4)) + spread * np.eye(4)[labels]
        count = np.bincount(labels, minlength=3).astype(float)
        total = np.stack([x[labels == k].sum(0) for k in range(3)])
        squares = np.array([(x[labels == k] ** 2).sum() for k in range(3)])
        stats.append(centroid_separation(count, total, squares))
    assert stats[1] > 5 * stats[0] > 0


def test_feature_stats_of_every_array_and_epoch_pairs(tmp_path):
    path, _, labels, features = clean_store(tmp_path / "s.zarr", epochs=(1, 2, 3))
    stats = feature_stats(path)
    by_epoch = {e["epoch"]: e for e in stats["arrays"]}
    f1 = features[1].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(by_epoch[1]["channel_std"], f1.std(axis=(0, 1, 3, 4)), atol=1e-4)
    norm = np.sqrt((f1.reshape(len(f1), -1) ** 2).sum(1)).mean()
    assert by_epoch[1]["mean_norm"] == pytest.approx(norm, rel=1e-4)
    assert by_epoch[1]["centroid_separation"] > 0 and by_epoch[1]["view_policy"] == "clean"
    (cka,) = stats["cka"]
    matrix = np.array(cka["linear_cka"])
    assert cka["epochs"] == [1, 2, 3] and matrix.shape == (3, 3)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    f2 = features[2].astype(np.float16).astype(np.float32)
    assert matrix[0, 1] == pytest.approx(_numpy_cka(f1, f2), abs=1e-4)
    written = plot_stats(stats, tmp_path / "plots")
    assert {p.name for p in written} == {"channels_t1_block3.png", "cka_t1_block3.png"}
    assert all(p.stat().st_size > 1000 for p in written)


def test_xarray_views_have_named_dims(tmp_path):
    path, _, labels, _ = clean_store(tmp_path / "s.zarr", views=3)
    features = open_features(path, "t1", 1, "block3")
    assert features.dims == ("sample", "view", "channel", "y", "x") and features.sizes["view"] == 3
    assert (features["label"].values == labels).all()
    per_class = features.astype("float32").groupby("label").mean().compute()
    assert per_class.sizes["label"] == 3
    params = open_view_params(path, "t1")
    assert params.dims == ("sample", "view", "param") and float(params.isel(view=0).sum()) == 0
    assert open_view_params(clean_store(tmp_path / "c.zarr")[0], "t1") is None


def test_float16_sums_do_not_overflow(tmp_path):
    """Values whose float16 sum would overflow (> 65504) are averaged correctly."""
    path, *_ = clean_store(tmp_path / "s.zarr", n=64, epochs=(1,))
    writer.write_epoch_features(
        path, "t1", 1, "sha1", {"block3": np.full((64, 1, 8, 4, 4), 3000.0)}, np.zeros((64, 1, 3)), "clean"
    )
    (entry,) = feature_stats(path)["arrays"]
    assert entry["channel_mean"] == [3000.0] * 8 and entry["channel_std"] == [0.0] * 8


def test_cka_text_and_heat_map_show_four_decimals(monkeypatch, tmp_path):
    from elfdd.store import inspect as inspect_module

    stats = {"store": "s", "arrays": [], "cka": [{"teacher": "t1", "layer": "block3", "epochs": [1, 2],
             "pairs": [], "linear_cka": [[1.0, 0.99964], [0.99964, 1.0]]}]}  # fmt: skip
    assert " 0.9996" in format_stats(stats) and " 1.0000" in format_stats(stats)
    texts = []
    real = inspect_module.save_figure

    def recording(fig, path, **kwargs):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return real(fig, path, **kwargs)

    monkeypatch.setattr(inspect_module, "save_figure", recording)
    plot_stats(stats, tmp_path)
    assert sorted(texts) == ["0.9996", "0.9996", "1.0000", "1.0000"]


def test_xarray_opens_a_sealed_epoch_group_with_consolidated_metadata_and_a_label_coordinate(tmp_path):
    import warnings

    import xarray as xr

    path, _, labels, features = clean_store(tmp_path / "s.zarr", views=2)
    writer.seal_store(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "failed to open with consolidated metadata" warning
        dataset = xr.open_zarr(path, group="teachers/t1/epoch_0001", consolidated=True)
    assert "label" in dataset.coords and (dataset["label"].values == labels).all()
    assert dataset["block3"].dims == ("sample", "view", "channel", "y", "x")
    assert dataset["logits"].dims == ("sample", "view", "class")
    np.testing.assert_allclose(dataset["block3"].values, features[1].astype(np.float16).astype(np.float32))
    from elfdd.store.reader import FeatureStore

    assert FeatureStore(path).layers("t1", 1) == ["block3"]  # the coordinate is no layer
    writer.write_epoch_features(  # an epoch added after the seal is seen by elfdd's reader
        path, "t1", 9, "sha9", {"block3": features[1]}, np.zeros((12, 2, 3), np.float32), "replay"
    )
    assert 9 in FeatureStore(path).epochs("t1")
