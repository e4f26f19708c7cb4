"""The Zarr store: schema 1 layout, plain zarr/dask/xarray reads, completeness, checksums, provenance."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr
from helpers import clean_store

from elfdd.core.errors import BadInput
from elfdd.core.io import content_sha256
from elfdd.store import writer
from elfdd.store.inspect import feature_stats, open_features
from elfdd.store.reader import FeatureDataset, FeatureStore
from elfdd.store.verify import verify_store


def make_store(path, **kwargs):
    _, images, labels, features = clean_store(path, **kwargs)
    return images, labels, features


def test_layout_and_attrs_follow_the_schema(tmp_path):
    path = tmp_path / "store.zarr"
    images, labels, _ = make_store(path)
    root = zarr.open_group(str(path), mode="r")
    meta = root.attrs["elfdd"]
    assert meta["schema"] == 1 and meta["image_shape"] == [1, 28, 28]
    assert meta["synthetic_sha256"] == content_sha256(images, labels)
    feat = root["teachers/t1/epoch_0002/block3"]
    assert feat.dtype == np.float16 and feat.shape == (12, 1, 8, 4, 4)
    assert feat.attrs["complete"] is True and feat.attrs["view_policy"] == "clean"
    assert "crc32c" in feat.attrs["codec"]
    assert list(feat.metadata.dimension_names) == ["sample", "view", "channel", "y", "x"]
    assert root["teachers/t1/epoch_0002/logits"].dtype == np.float32
    assert root["teachers/t1/epoch_0002"].attrs["checkpoint_sha256"] == "sha2"


def test_plain_zarr_dask_and_xarray_read_every_array(tmp_path):
    import xarray as xr

    path = tmp_path / "store.zarr"
    _, _, features = make_store(path)
    lazy = da.from_zarr(str(path), component="teachers/t1/epoch_0001/block3")
    np.testing.assert_allclose(
        lazy.astype(np.float32).compute(), features[1].astype(np.float16).astype(np.float32)
    )
    ds = xr.open_zarr(str(path), group="teachers/t1/epoch_0001", consolidated=False)
    assert ds["block3"].dims == ("sample", "view", "channel", "y", "x")
    arr = open_features(path, "t1", 1, "block3")
    assert arr.dims == ("sample", "view", "channel", "y", "x") and "label" in arr.coords


def test_reader_lists_and_streams(tmp_path):
    path = tmp_path / "store.zarr"
    images, labels, features = make_store(path)
    store = FeatureStore(path)
    assert store.teachers() == ["t1"] and store.epochs("t1") == [1, 2] and store.layers("t1", 1) == ["block3"]
    dataset = FeatureDataset(path, "t1", 2, "block3")
    x, f, y, p = dataset.get_batch([3, 0, 7])
    np.testing.assert_array_equal(x.numpy(), images[[3, 0, 7]])
    np.testing.assert_allclose(f.numpy(), features[2][[3, 0, 7], 0].astype(np.float16).astype(np.float32))
    assert p.shape == (3, 0)  # a clean store has no view parameters
    assert y.tolist() == labels[[3, 0, 7]].tolist()


def test_incomplete_array_is_refused(tmp_path):
    path = tmp_path / "store.zarr"
    make_store(path)
    root = zarr.open_group(str(path), mode="r+")
    root["teachers/t1/epoch_0001/block3"].attrs["complete"] = False
    with pytest.raises(BadInput, match="incomplete"):
        FeatureDataset(path, "t1", 1, "block3")
    assert any("complete marker" in p for p in verify_store(path))


def test_verify_finds_a_flipped_byte_in_a_chunk(tmp_path):
    path = tmp_path / "store.zarr"
    make_store(path)
    assert verify_store(path) == []
    chunk = next((path / "teachers/t1/epoch_0001/block3/c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    problems = verify_store(path)
    assert any("epoch_0001/block3" in p for p in problems)
    with pytest.raises(
        BadInput, match=r"epoch_0001/block3\[0:12,.*\]: Stored and computed checksum do not match"
    ):
        FeatureDataset(path, "t1", 1, "block3")  # refused when opened, before any batch


def test_a_store_of_another_synthetic_set_is_not_reused(tmp_path):
    path = tmp_path / "store.zarr"
    make_store(path)
    with pytest.raises(BadInput, match="holds synthetic set"):
        writer.create_store(
            path, np.zeros((2, 1, 28, 28), np.float32), np.zeros(2, np.int64), "toy", 3, {}, "test"
        )


def test_not_a_store(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        FeatureStore(tmp_path / "nothing.zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(BadInput, match="not an elfdd feature store"):
        FeatureStore(tmp_path / "other.zarr")


def test_feature_stats_are_computed_in_float32(tmp_path):
    path = tmp_path / "store.zarr"
    _, _, features = make_store(path)
    stats = {(e["epoch"], e["layer"]): e for e in feature_stats(path)["arrays"]}
    expected = features[1].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(
        stats[(1, "block3")]["channel_mean"], expected.mean(axis=(0, 1, 3, 4)), atol=1e-4
    )
    assert stats[(1, "block3")]["sparsity"] == pytest.approx(float((expected == 0).mean()), abs=1e-5)


def test_names_are_validated_never_paths(tmp_path):
    path = tmp_path / "store.zarr"
    make_store(path)
    with pytest.raises(BadInput, match=r"\[a-z0-9_\]"):
        writer.write_teacher(path, "../x", {})
