"""Streaming from the store: chunk-aware shuffling, bounded memory, DataLoader workers, concurrent readers, codecs."""

from __future__ import annotations

import hashlib
import multiprocessing

import numpy as np
import pytest
import torch
import zarr
from helpers import clean_store

from elfdd.core.errors import BadInput
from elfdd.pipeline.config import load_config
from elfdd.store import writer
from elfdd.store.codecs import CodecSpec
from elfdd.store.reader import FeatureDataset
from elfdd.store.stream import ChunkShuffleSampler, feature_loader
from elfdd.store.verify import verify_store


@pytest.fixture
def many_chunks(tmp_path, monkeypatch):
    """A store of 200 samples x 3 views in chunks of 16 samples (4 KB chunks instead of 4 MB)."""
    monkeypatch.setattr(writer, "CHUNK_BYTES", 4096)
    return clean_store(tmp_path / "big.zarr", n=200, feature_shape=(4, 2, 2), epochs=(1,), views=3)


def _epoch_samples(sampler: ChunkShuffleSampler) -> list[int]:
    return [s for batch in sampler for s, _ in batch]


def test_sampler_visits_every_sample_once_and_reshuffles_by_epoch():
    sampler = ChunkShuffleSampler(100, 16, 8, seed=3, views=4, window_chunks=2)
    first = _epoch_samples(sampler)
    assert sorted(first) == list(range(100)) and first == _epoch_samples(sampler)
    sampler.set_epoch(1)
    assert _epoch_samples(sampler) != first
    assert all(0 <= v < 4 for batch in sampler for _, v in batch)
    assert [len(b) for b in sampler] == [8] * 12 + [4]


def test_a_batch_touches_at_most_the_window_of_chunks():
    sampler = ChunkShuffleSampler(1000, 10, 32, seed=0, window_chunks=3)
    for batch in sampler:
        # a batch may straddle two consecutive windows
        assert len({s // 10 for s, _ in batch}) <= 6
    full = ChunkShuffleSampler(1000, 10, 32, seed=0)
    spread = max(len({s // 10 for s, _ in batch}) for batch in full)
    assert spread > 6  # the default window (every chunk) is a plain per-sample shuffle


def test_streaming_with_a_cache_smaller_than_the_store(many_chunks):
    path, images, labels, features = many_chunks
    dataset = FeatureDataset(path, "t1", 1, "block3", cache_bytes=2 * 16 * 4 * 28 * 28)
    assert dataset.chunk == 16 and dataset.num_chunks == 13
    sampler = ChunkShuffleSampler(len(dataset), dataset.chunk, 10, seed=0, views=3, window_chunks=2)
    peak, seen = 0, []
    for keys, (x, f, y, _) in zip(sampler, feature_loader(dataset, sampler, prefetch=0), strict=True):
        peak = max(peak, dataset.cached_bytes())
        samples = [s for s, _ in keys]
        views = [v for _, v in keys]
        np.testing.assert_array_equal(x.numpy(), images[samples])
        np.testing.assert_array_equal(y.numpy(), labels[samples])
        expected = features[1][samples, views].astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(f.numpy(), expected)
        seen += samples
    assert sorted(seen) == list(range(200))
    assert (
        peak <= 3 * dataset.chunk_bytes
    )  # the cache bound (plus the chunk being read), never the whole store


def _batches(loader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in loader]


def test_dataloader_workers_after_the_parent_read_the_store(many_chunks):
    """zarr 3 + fork: the parent reads first, then forked workers read; results equal the in-process reader."""
    path, *_ = many_chunks
    dataset = FeatureDataset(path, "t1", 1, "block3")
    dataset.get_batch([0, 50, 199])  # the parent has opened the store and decoded chunks
    sampler = ChunkShuffleSampler(len(dataset), dataset.chunk, 24, seed=5, views=3)
    in_process = _batches(feature_loader(dataset, sampler))
    loader = feature_loader(dataset, sampler, num_workers=2)
    loader.timeout = 120  # a deadlock fails the test instead of hanging it
    with_workers = _batches(loader)
    assert len(with_workers) == len(in_process) == len(sampler)
    for a, b in zip(in_process, with_workers, strict=True):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y)


def _store_digest(path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + file.read_bytes())
        digest.update(str(file.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def _read_all(path: str) -> float:
    dataset = FeatureDataset(path, "t1", 1, "block3")
    sampler = ChunkShuffleSampler(len(dataset), dataset.chunk, 32, seed=0)  # view 0 of every sample
    return float(sum(f.double().sum() for _, f, _, _ in feature_loader(dataset, sampler)))


@pytest.mark.slow
def test_concurrent_readers_in_other_processes_leave_the_store_untouched(many_chunks):
    path, _, _, features = many_chunks
    before = _store_digest(path)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        totals = pool.map(_read_all, [str(path)] * 3)
    expected = float(features[1][:, 0].astype(np.float16).astype(np.float64).sum())
    assert totals == pytest.approx([expected] * 3)
    assert _store_digest(path) == before and verify_store(path) == []


def test_a_damaged_chunk_reaches_the_consumer_of_the_prefetch_thread(many_chunks):
    path, *_ = many_chunks
    chunk = path / "teachers/t1/epoch_0001/block3/c/5/0/0/0/0"
    dataset = FeatureDataset(path, "t1", 1, "block3")  # sound when opened (the open checks every chunk) ...
    chunk.write_bytes(chunk.read_bytes()[:-5])  # ... damaged while it trains
    sampler = ChunkShuffleSampler(len(dataset), dataset.chunk, 16, seed=0)
    with pytest.raises(BadInput, match="cannot read samples 80:96 of teachers/t1/epoch_0001/block3"):
        for _ in feature_loader(dataset, sampler, prefetch=2):
            pass


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_lossless_round_trip(tmp_path, dtype):
    path, _, _, features = clean_store(tmp_path / "s.zarr", epochs=(1,), dtype=dtype)
    stored = zarr.open_group(str(path), mode="r")["teachers/t1/epoch_0001/block3"]
    np.testing.assert_array_equal(stored[...], features[1].astype(dtype))
    assert stored.attrs["codec"] == "blosc-zstd5-bitshuffle+crc32c"


@pytest.mark.parametrize(
    "codec,bound",
    [
        (CodecSpec(bitround_keepbits=4), lambda x: np.abs(x) * 2.0**-4),
        (CodecSpec(bitround_keepbits=8), lambda x: np.abs(x) * 2.0**-8),
        (CodecSpec(quantize_digits=2), lambda x: np.full_like(x, 10.0**-2)),
        (CodecSpec(bitround_keepbits=6, quantize_digits=2), lambda x: 10.0**-2 + np.abs(x) * 2.0**-6),
    ],
)
def test_lossy_round_trip_stays_within_its_bound_and_plain_zarr_reads_it(tmp_path, codec, bound):
    path, *_ = clean_store(tmp_path / "s.zarr", epochs=())
    rng = np.random.default_rng(1)
    values = np.maximum(rng.normal(size=(12, 1, 8, 4, 4)), 0).astype(np.float32) * 3
    writer.write_epoch_features(
        path, "t1", 1, "sha1", {"block3": values}, np.zeros((12, 1, 3)), "clean", "float32", codec
    )
    stored = zarr.open_group(str(path), mode="r")["teachers/t1/epoch_0001/block3"]  # plain zarr, no elfdd
    decoded = stored[...]
    error = np.abs(decoded - values)
    assert (error <= bound(values) + 1e-7).all() and error.max() > 0
    assert stored.attrs["codec"].startswith(codec.describe().split("+")[0])
    assert verify_store(path) == []


def test_lossy_codecs_are_validated_in_the_config(toy_npz):
    with pytest.raises(BadInput, match="bitround keepbits must be within 1..10"):
        load_config(None, ["extract.bitround_keepbits=12"])  # float16 has 10 mantissa bits
    config = load_config(None, ["extract.bitround_keepbits=12", "extract.dtype=float32"])
    assert config.extract.codec.describe() == "bitround12+blosc-zstd5-bitshuffle+crc32c"


def test_in_memory_reference_gives_the_same_batches(many_chunks):
    from elfdd.store.reader import InMemoryFeatures

    path, *_ = many_chunks
    dataset = FeatureDataset(path, "t1", 1, "block3")
    memory = InMemoryFeatures(dataset)
    sampler = ChunkShuffleSampler(len(dataset), dataset.chunk, 32, seed=2, views=3)
    for streamed, loaded in zip(
        feature_loader(dataset, sampler), feature_loader(memory, sampler), strict=True
    ):
        for a, b in zip(streamed, loaded, strict=True):
            torch.testing.assert_close(a, b)
