"""What the readers' integrity check costs: every chunk of a cell's arrays hashed against the digests recorded at
write time, once when a student opens the store (store/reader.FeatureStore.refuse_damaged_chunks).

    python bench/integrity.py [--n 100] [--views 64] [--channels 512] [--repeats 3]

Writes a store of the study's size (IPC 10 x 10 classes, 64 replay views, the 512-wide teacher's block3 feature
(512, 3, 3) in float16, lossless Blosc) into a temporary folder with elfdd's writer, then prints the best of
``--repeats`` times of: the check, one plain read of the same arrays, and their ratio. A study cell trains for
minutes (docs/results.md); the check is paid once per cell.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from elfdd.store import writer
from elfdd.store.reader import FeatureStore


def build(path: Path, n: int, views: int, channels: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 1, 28, 28)).astype(np.float32)
    labels = (np.arange(n) % 10).astype(np.int64)
    writer.create_store(path, images, labels, "fashion_mnist", 10, {"mean": [0.3], "std": [0.35]}, "bench")
    writer.write_teacher(path, "t", {"arch": "convnet", "arch_kwargs": {}, "trained_on": {}, "seed": 0})
    params = rng.random((n, views, 17)).astype(np.float32)
    params[:, 0] = 0
    writer.write_views(path, "t", params, {"seed": 0})
    features = np.maximum(rng.normal(size=(n, views, channels, 3, 3)), 0).astype(np.float32)
    logits = rng.normal(size=(n, views, 10)).astype(np.float32)
    writer.write_epoch_features(path, "t", 5, "sha", {"block3": features}, logits, "replay")


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.zarr"
        build(path, args.n, args.views, args.channels)
        store = FeatureStore(path)
        arrays = [store.features("t", 5, "block3"), store.logits("t", 5), *store.synthetic_arrays()]
        arrays.append(store.view_params("t"))
        size = sum(a.nbytes for a in arrays)
        check = best(lambda: store.refuse_damaged_chunks(*arrays), args.repeats)
        read = best(lambda: [a[...] for a in arrays], args.repeats)
    print(
        f"store: {args.n} images x {args.views} views x ({args.channels}, 3, 3) float16, {size / 1e6:.1f} MB decoded"
    )
    print(f"seconds integrity_check {check:.3f}  plain_read {read:.3f}")
    print(f"ratio integrity_check_over_plain_read {check / read:.2f}")
    print("command: python bench/integrity.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()))


if __name__ == "__main__":
    main()
