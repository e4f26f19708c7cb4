"""Feature-store benchmark: size ratios per codec, accuracy cost of lossy codecs, streaming vs in-memory speed.

    python bench/store.py --run runs/default [--views 32] [--seeds 0,1] [--epochs 80]

Needs a finished run directory (``make run`` writes runs/default): its synthetic set, teacher checkpoint and data.
Every store is written into a temporary folder by elfdd's own extraction; nothing in the run is changed. Prints:

- per store (the run's own config, then V views) and codec: bytes, and the ratio against raw float32 and against
  ``torch.save`` of the same float32 tensor (ratio below 1: the store is smaller);
- per lossy codec: the ConvNet ELF student's test accuracy change against the lossless float16 store, same seeds;
- streaming read throughput (samples/s) of the store reader against an in-memory tensor dataset, and the student
  training time per step with each (goal: streaming at most 1.05x in-memory).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from elfdd.pipeline import stages
from elfdd.pipeline.config import ExtractConfig
from elfdd.pipeline.students import Cell, StudentContext, train_cell
from elfdd.pipeline.training import configure_threads
from elfdd.store.reader import FeatureDataset, InMemoryFeatures
from elfdd.store.stream import ChunkShuffleSampler, feature_loader

LOSSY = {
    "float16": {},
    "float32": {"dtype": "float32"},
    "bitround7": {"bitround_keepbits": 7},
    "bitround4": {"bitround_keepbits": 4},
    "bitround2": {"bitround_keepbits": 2},
    "quantize2": {"quantize_digits": 2},
    "quantize1": {"quantize_digits": 1},
}


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def feature_bytes(store: Path, teacher_id: str, epoch: int, layer: str) -> int:
    """Bytes on disk of one feature array (chunks and metadata)."""
    return directory_bytes(store / "teachers" / teacher_id / f"epoch_{epoch:04d}" / layer)


def torch_save_bytes(tensor: torch.Tensor) -> int:
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.tell()


def build_store(run: stages.Run, config, folder: Path, name: str, **extract) -> Path:
    """One store from the run's synthetic set and teacher checkpoint, at the students' epoch and layer."""
    cfg = ExtractConfig(**{**config.extract.model_dump(), **extract})
    path = folder / f"{name}.zarr"
    stages.extract_run_store(run, path, [config.student_teacher_epoch], [config.student_layer], cfg)
    return path


def size_rows(run, config, folder: Path, views: int) -> dict[str, Path]:
    stores = {}
    for v in sorted({config.extract.views, views}):
        for codec, extract in LOSSY.items():
            name = f"v{v}_{codec}"
            stores[name] = build_store(run, config, folder, name, views=v, **extract)
            dataset = FeatureDataset(
                stores[name], config.teacher.id, config.student_teacher_epoch, config.student_layer
            )
            raw = torch.from_numpy(InMemoryFeatures(dataset).features.numpy())  # float32, as decoded
            size = feature_bytes(stores[name], *_key(config))
            print(
                f"size V={v:<3} {codec:<10} {size:>10} B  vs raw float32 {raw.numel() * 4:>10} B: "
                f"{size / (raw.numel() * 4):.3f}  vs torch.save {torch_save_bytes(raw):>10} B: "
                f"{size / torch_save_bytes(raw):.3f}"
            )
            print(f"ratio store_over_torch_save_v{v}_{codec} {size / torch_save_bytes(raw):.3f}")
    return stores


def _key(config) -> tuple[str, int, str]:
    return config.teacher.id, config.student_teacher_epoch, config.student_layer


def accuracy_rows(stores: dict[str, Path], config, seeds: list[int], epochs: int) -> None:
    data = stages.data_for(config)
    students = config.students.model_copy(update={"epochs": epochs})
    accuracy = {}
    for codec in LOSSY:
        dataset = FeatureDataset(stores[f"v{config.extract.views}_{codec}"], *_key(config))
        accuracy[codec] = [
            train_cell(
                Cell("convnet", "front_rear_task", seed),
                dataset,
                StudentContext(
                    data.x_test, data.y_test, students, data.num_classes, torch.device("cpu"), "fp32"
                ),
            )["test_acc"]
            for seed in seeds
        ]
    base = np.array(accuracy["float16"])
    for codec, values in accuracy.items():
        change = 100 * (np.array(values) - base)
        print(
            f"accuracy convnet ELF {codec:<10} {100 * np.mean(values):.2f} ± {100 * np.std(values):.2f} %  "
            f"change vs float16 {change.mean():+.2f} ± {change.std():.2f} points (seeds {seeds}, {epochs} epochs)"
        )


def throughput_rows(store: Path, config, batch: int, rounds: int) -> None:
    """Samples/s of whole epochs, streaming (fresh reader each round) vs in-memory, alternating A/B."""
    probe = FeatureDataset(store, *_key(config))
    sampler = ChunkShuffleSampler(len(probe), probe.chunk, batch, seed=0, views=probe.views)
    epochs_per_round = max(1, 20_000 // len(probe))
    seconds = {"stream": 0.0, "memory": 0.0}
    for _ in range(rounds):
        for kind in seconds:
            started = time.perf_counter()
            dataset = FeatureDataset(store, *_key(config)) if kind == "stream" else InMemoryFeatures(probe)
            for epoch in range(epochs_per_round):
                sampler.set_epoch(epoch)
                for _batch in feature_loader(dataset, sampler, prefetch=2 if kind == "stream" else 0):
                    pass
            seconds[kind] += time.perf_counter() - started
    samples = rounds * epochs_per_round * len(probe)
    rate = {k: samples / v for k, v in seconds.items()}
    print(
        f"read V={probe.views}: streaming {rate['stream']:.0f} samples/s, in-memory {rate['memory']:.0f} samples/s"
    )
    print(f"ratio read_stream_over_memory {rate['stream'] / rate['memory']:.3f}")


def step_rows(store: Path, config, epochs: int, rounds: int) -> None:
    """Student training seconds per step with the streaming reader vs the in-memory dataset, same seed, A/B."""
    data = stages.data_for(config)
    students = config.students.model_copy(update={"epochs": epochs})
    stream = FeatureDataset(store, *_key(config))
    memory = InMemoryFeatures(stream)
    steps = epochs * -(-len(stream) // students.batch_size)
    seconds = {"stream": [], "memory": []}
    for _ in range(rounds):
        for kind, dataset in (("stream", stream), ("memory", memory)):
            record = train_cell(
                Cell("convnet", "front_rear_task", 0, "replay" if stream.views > 1 else None),
                dataset,
                StudentContext(
                    data.x_test[:10],
                    data.y_test[:10],
                    students,
                    data.num_classes,
                    torch.device("cpu"),
                    "fp32",
                ),
            )
            seconds[kind].append(record["train_seconds"] / steps)
    stream_s, memory_s = np.median(seconds["stream"]), np.median(seconds["memory"])
    print(
        f"step convnet ELF: streaming {1000 * stream_s:.1f} ms, in-memory {1000 * memory_s:.1f} ms (median of {rounds})"
    )
    print(f"ratio step_stream_over_memory {stream_s / memory_s:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default", help="a finished run directory")
    parser.add_argument("--views", type=int, default=32, help="V of the large store")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=0, help="student epochs (default: the run's)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    run = stages.open_run(Path(args.run))
    config = run.config
    configure_threads(config.threads)
    epochs = args.epochs or config.students.epochs
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"# run {run.dir.root}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="elfdd-bench-") as tmp:
        stores = size_rows(run, config, Path(tmp), args.views)
        accuracy_rows(stores, config, seeds, epochs)
        large = stores[f"v{args.views}_float16"]
        throughput_rows(large, config, config.students.batch_size, args.rounds)
        step_rows(large, config, epochs, args.rounds)


if __name__ == "__main__":
    main()
