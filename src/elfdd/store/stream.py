"""Streaming batches from the store: chunk-aware shuffling, one-call batch fetches, prefetching, DataLoader workers.

The sampler shuffles the order of chunks, then shuffles samples within a window of ``window_chunks`` chunks, so a
batch touches at most that many chunks and the reader's cache stays bounded: with the window covering every chunk
(the default when the features fit the cache) it is a plain per-sample shuffle. With ``views > 1`` each sample
also gets a view drawn uniformly, and the batch keys are (sample, view) pairs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from .reader import Batch, FeatureDataset


class ChunkShuffleSampler(torch.utils.data.Sampler):
    """Batches of (sample, view) keys; call ``set_epoch`` for a new order each epoch (same seed, same order)."""

    def __init__(
        self,
        length: int,
        chunk: int,
        batch_size: int,
        seed: int = 0,
        views: int = 1,
        window_chunks: int | None = None,
    ):
        if batch_size < 1 or chunk < 1:
            raise ValueError("batch_size and chunk must be positive")
        self.length, self.chunk, self.batch_size, self.seed, self.views = (
            length,
            chunk,
            batch_size,
            seed,
            views,
        )
        self.num_chunks = -(-length // chunk)
        self.window = min(self.num_chunks, window_chunks or self.num_chunks)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.length // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = rng.permutation(self.num_chunks)
        pending = np.empty(0, np.int64)
        for start in range(0, self.num_chunks, self.window):
            window = np.concatenate(
                [
                    np.arange(c * self.chunk, min(self.length, (c + 1) * self.chunk))
                    for c in chunks[start : start + self.window]
                ]
            )
            pending = np.concatenate([pending, rng.permutation(window)])
            while len(pending) >= self.batch_size:
                yield self._keys(pending[: self.batch_size], rng)
                pending = pending[self.batch_size :]
        if len(pending):
            yield self._keys(pending, rng)

    def _keys(self, samples: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
        views = (
            rng.integers(0, self.views, len(samples)) if self.views > 1 else np.zeros(len(samples), np.int64)
        )
        return list(zip(samples.tolist(), views.tolist(), strict=True))


def _whole_batch(batch: Any) -> Batch:
    """DataLoader collate for ``__getitems__`` batches, which arrive already stacked."""
    return batch


def feature_loader(
    dataset: FeatureDataset,
    sampler: ChunkShuffleSampler,
    num_workers: int = 0,
    prefetch: int = 2,
) -> Iterable[Batch]:
    """Batches of (images, features, labels, view params) in the sampler's order.

    ``num_workers > 0`` reads in worker processes (each opens the store itself); with 0, a background thread
    reads ``prefetch`` batches ahead (zarr and Blosc decode outside the GIL). Workers start from a fork server,
    not by forking the caller: a process that ran a Prefect flow (event-loop threads, an ephemeral API server) or
    holds zarr's async loop is not safe to fork, and forked workers of one died at start. They persist across
    epochs (the sampler's epoch is read in this process, so ``set_epoch`` still reshuffles).
    """
    if num_workers > 0:
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=num_workers,
            collate_fn=_whole_batch,
            prefetch_factor=prefetch,
            persistent_workers=True,
            multiprocessing_context="forkserver",
        )
    return Prefetched(dataset, sampler, prefetch)


class Prefetched:
    """Iterates the sampler's batches, fetching up to ``depth`` ahead in a thread; errors reach the consumer."""

    def __init__(self, dataset: FeatureDataset, sampler: ChunkShuffleSampler, depth: int = 2):
        self.dataset, self.sampler, self.depth = dataset, sampler, depth

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        if self.depth < 1:
            yield from (self.dataset.__getitems__(keys) for keys in self.sampler)
            return
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for keys in self.sampler:
                    if stop.is_set():
                        return
                    ready.put(self.dataset.__getitems__(keys))
                ready.put(done)
            except BaseException as exc:  # handed to the consumer, raised there
                ready.put(exc)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(0.01)
