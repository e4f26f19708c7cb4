"""Distillation methods on Fashion-MNIST: ConvNet test accuracy of DM, DSA and MTT sets next to a random real
subset of the same size and the published DC/DSA numbers, with wall time; and MetaDD's cross-architecture effect.

    python bench/distill.py [--ipc 1,10] [--methods dm,dsa,mtt] [--iterations dm=200,dsa=100,mtt=200]
                            [--eval-epochs 300] [--seeds 0,1] [--metadd-archs resnet18,vgg11,alexnet,mlp] [--no-overhead]
                            [--device cpu|cuda] [--jobs N]

``--ipc ''`` and ``--metadd-archs ''`` skip those parts.

Every accuracy is mean ± std over the seeds (each seed distils and evaluates once). Prints one line per cell and
`ratio` lines (method accuracy over the random subset's).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from elfdd.core.errors import BadInput
from elfdd.models import create_model
from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import DataSplits, load_data
from elfdd.pipeline.distill import distill, initial_images
from elfdd.pipeline.teachers import train_epoch
from elfdd.pipeline.training import configure_threads, evaluate, seed_everything, sgd_with_half_decay

# Zhao & Bilen 2021 (DSA paper), ConvNet on Fashion-MNIST, (approximate, from the paper's tables).
PUBLISHED = {("dc", 1): 70.5, ("dc", 10): 82.3, ("dsa", 1): 70.6, ("dsa", 10): 84.6}
CPU = torch.device("cpu")


def evaluate_synthetic(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: DataSplits,
    arch: str,
    epochs: int,
    seed: int,
    device: torch.device,
    precision: str,
    lr: float = 0.01,
    dsa: bool = True,
) -> float:
    """Test accuracy of ``arch`` trained ``epochs`` epochs on the set (SGD momentum 0.9, wd 5e-4, lr x0.1 at half,
    batch 256, DSA): the DC/DSA/DM evaluation protocol."""
    generator = seed_everything(seed)
    model = create_model(arch, data.image_shape[0], data.num_classes, data.image_shape[-1]).to(device)
    optimizer, scheduler = sgd_with_half_decay(model.parameters(), lr, 0.9, 5e-4, epochs)
    for _ in range(epochs):
        train_epoch(model, optimizer, images, labels, 256, dsa, generator, device, precision)
        scheduler.step()
    return evaluate(model, data.x_test, data.y_test, device, precision)


def parse_pairs(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}


def distilled(
    data, ipc: int, method: str, iterations: int, seed: int, experts: Path, extra: list[str], device=CPU
):
    """(images, labels, seconds) of one distillation; ``random`` is the real-subset baseline."""
    started = time.perf_counter()
    if method == "random":
        images, labels = initial_images(data, ipc, "real", seed_everything(seed))
        return images, labels, time.perf_counter() - started
    sets = [f"distill.method={method}", f"distill.ipc={ipc}", f"distill.iterations={iterations}", *extra]
    cfg = load_config(None, sets).distill
    synthetic, _ = distill(data, cfg, device, "fp32", seed, experts / f"{method}-seed{seed}")
    return synthetic.images, synthetic.labels, time.perf_counter() - started


def summary(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", default="1,10")
    parser.add_argument("--methods", default="dm,dsa,mtt")
    parser.add_argument("--iterations", default="dm=200,dsa=100,mtt=200")
    parser.add_argument("--eval-epochs", type=int, default=300)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--train-subset", type=int, default=None, help="real images distillation sees")
    parser.add_argument(
        "--set", action="append", default=[], help="extra distill config, e.g. distill.batch_real=32"
    )
    parser.add_argument(
        "--metadd-archs", default="resnet18,vgg11,alexnet,mlp", help="'' skips the MetaDD study"
    )
    parser.add_argument("--metadd-ipc", type=int, default=1)
    parser.add_argument("--no-overhead", action="store_true", help="skip MetaDD's time/memory probes")
    parser.add_argument("--jobs", type=int, default=1, help="cells run in this many processes at once")
    parser.add_argument("--device", type=torch.device, default=CPU, help="cpu or cuda (MetaDD probes: cpu)")
    parser.add_argument(
        "--probe", choices=["off", "on"], help=argparse.SUPPRESS
    )  # one memory probe, internal
    args = parser.parse_args()
    if args.probe:
        return memory_probe(args.probe == "on", args.metadd_ipc, args.set)
    configure_threads(0)
    seeds = [int(s) for s in args.seeds.split(",")]
    iterations = parse_pairs(args.iterations)
    data_sets = [f"data.train_subset={args.train_subset}"] if args.train_subset else []
    data = load_data(load_config(None, data_sets).data)
    where = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu"
    print(
        f"# Fashion-MNIST, {len(data.y_train)} train images, torch {torch.__version__}, {where}, "
        f"{torch.get_num_threads()} threads, eval: ConvNet {args.eval_epochs} epochs, seeds {seeds}"
    )
    with tempfile.TemporaryDirectory(prefix="elfdd-experts-") as tmp:
        experts = Path(tmp)
        ipcs = [int(i) for i in args.ipc.split(",") if i]
        methods = ["random", *args.methods.split(",")]
        for seed in (
            seeds if ipcs and "mtt" in methods else []
        ):  # each seed's trajectories, once, before the cells
            distilled(data, ipcs[0], "mtt", 0, seed, experts, args.set, args.device)
        cells = [(ipc, method, seed) for ipc in ipcs for method in methods for seed in seeds]
        outcome = dict(zip(cells, run_cells(cells, data, args, iterations, experts), strict=True))
        for ipc in ipcs:
            report_ipc(ipc, methods, seeds, iterations, outcome)
        if args.metadd_archs:
            metadd_study(data, args, seeds, iterations, experts)
        if not args.no_overhead:
            metadd_overhead(args)


def run_cell(cell, data, args, iterations, experts: Path):
    """(accuracy, distill seconds) of one (ipc, method, seed) cell, or the error message if it failed."""
    ipc, method, seed = cell
    try:
        images, labels, took = distilled(
            data, ipc, method, iterations.get(method, 0), seed, experts, args.set, args.device
        )
    except BadInput as exc:  # e.g. images diverged: reported, the other cells still run
        return str(exc)
    accuracy = evaluate_synthetic(
        images, labels, data, "convnet", args.eval_epochs, seed, args.device, "fp32"
    )
    print(f"# ipc {ipc} {method} seed {seed}: {100 * accuracy:.2f} %, distill {took:.0f} s", flush=True)
    return accuracy, took


_WORKER: dict = {}


def _init_worker(data, args, iterations, experts) -> None:
    torch.set_num_threads(1)  # the cells share the machine's cores
    _WORKER.update(data=data, args=args, iterations=iterations, experts=experts)


def _worker_cell(cell):
    return run_cell(cell, _WORKER["data"], _WORKER["args"], _WORKER["iterations"], _WORKER["experts"])


def run_cells(cells, data, args, iterations, experts: Path) -> list:
    """Every cell, serially or (``--jobs N``) in N worker processes sharing the device, longest cells first."""
    if args.jobs <= 1:
        return [run_cell(cell, data, args, iterations, experts) for cell in cells]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(range(len(cells)), key=lambda i: -cells[i][0] * (cells[i][1] == "dsa") - cells[i][0])
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        args.jobs, mp_context=context, initializer=_init_worker, initargs=(data, args, iterations, experts)
    ) as pool:
        results = dict(zip(order, pool.map(_worker_cell, [cells[i] for i in order]), strict=True))
    return [results[i] for i in range(len(cells))]


def report_ipc(ipc: int, methods: list[str], seeds: list[int], iterations: dict, outcome: dict) -> None:
    accuracy: dict[str, list[float]] = {}
    for method in methods:
        runs = [outcome[(ipc, method, seed)] for seed in seeds]
        for seed, run in zip(seeds, runs, strict=True):
            if isinstance(run, str):
                print(f"ipc {ipc:<3} {method:<6} seed {seed}: failed: {run}")
        done = [run for run in runs if not isinstance(run, str)]
        if not done:
            continue
        accuracy[method] = [acc for acc, _ in done]
        published = PUBLISHED.get((method, ipc))
        print(
            f"ipc {ipc:<3} {method:<6} iterations {iterations.get(method, 0):<5} "
            f"convnet {summary(accuracy[method])} %  distill {np.mean([t for _, t in done]):.0f} s/seed"
            + (f"  published {published}" if published else "")
        )
        if method != "random" and "random" in accuracy:
            ratio = np.mean(accuracy[method]) / np.mean(accuracy["random"])
            print(f"ratio {method}_over_random_ipc{ipc} {ratio:.3f}")
    for (method, p_ipc), value in PUBLISHED.items():
        if p_ipc == ipc and method not in accuracy:
            print(f"ipc {ipc:<3} {method:<6} published {value} (not run here)")


def memory_probe(enabled: bool, ipc: int, extra: list[str], iterations: int = 10) -> None:
    """In its own process: DM iterations with or without MetaDD; prints seconds per iteration (auxiliary training
    excluded) and the process's peak resident memory."""
    import resource

    data = load_data(load_config(None, ["data.train_subset=10000", "data.test_subset=1000"]).data)
    sets = [f"distill.ipc={ipc}", f"distill.metadd.enabled={str(enabled).lower()}", *extra]
    one, _ = distill(data, load_config(None, [*sets, "distill.iterations=1"]).distill, CPU, "fp32", 0)
    more, _ = distill(
        data, load_config(None, [*sets, f"distill.iterations={iterations + 1}"]).distill, CPU, "fp32", 0
    )
    per_iteration = (
        more.extra["seconds"] - one.extra["seconds"]
    ) / iterations  # auxiliary training cancels out
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"probe metadd={enabled} per_iteration {per_iteration:.3f} s peak_rss_mb {peak_mb:.0f}")


def metadd_overhead(args) -> None:
    """MetaDD's time and memory overhead per DM iteration, each setting in a fresh process."""
    import re
    import subprocess
    import sys

    measured = {}
    for setting in ("off", "on"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--probe",
                setting,
                "--metadd-ipc",
                str(args.metadd_ipc),
                *sum((["--set", s] for s in args.set), []),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        seconds, peak = re.search(r"per_iteration ([0-9.]+) s peak_rss_mb ([0-9]+)", out).groups()
        measured[setting] = (float(seconds), float(peak))
    (t_off, m_off), (t_on, m_on) = measured["off"], measured["on"]
    print(
        f"metadd overhead dm ipc {args.metadd_ipc}: {t_off:.3f} -> {t_on:.3f} s per iteration (auxiliary "
        f"training excluded), peak RSS {m_off:.0f} -> {m_on:.0f} MB (each in a fresh process)"
    )
    print(f"ratio metadd_time {t_on / t_off:.2f}")
    print(f"ratio metadd_peak_rss {m_on / m_off:.2f}")


def metadd_study(data, args, seeds, iterations, experts: Path) -> None:
    """DM at ``--metadd-ipc`` with and without MetaDD, same seeds, evaluated on the non-ConvNet students."""
    archs = args.metadd_archs.split(",")
    results: dict[tuple[bool, str], list[float]] = {}
    for enabled in (False, True):
        extra = [*args.set, f"distill.metadd.enabled={str(enabled).lower()}"]
        for seed in seeds:
            images, labels, took = distilled(
                data, args.metadd_ipc, "dm", iterations.get("dm", 0), seed, experts, extra, args.device
            )
            for arch in archs:
                acc = evaluate_synthetic(
                    images, labels, data, arch, args.eval_epochs, seed, args.device, "fp32"
                )
                results.setdefault((enabled, arch), []).append(acc)
            print(f"# metadd={enabled} seed {seed}: distill {took:.0f} s")
    for arch in archs:
        off, on = results[(False, arch)], results[(True, arch)]
        gain = 100 * (np.array(on) - np.array(off))
        print(
            f"metadd dm ipc {args.metadd_ipc} {arch:<9} without {summary(off)}  with {summary(on)}  "
            f"gain {gain.mean():+.2f} ± {gain.std():.2f} points"
        )


if __name__ == "__main__":
    main()
