"""Performance: elfdd's own paths side by side with the baselines that are their limit, each printed as a ratio.

    python bench/perf.py [--quick] [--threads 2]
    python bench/perf.py --stage RUN_DIR    # only the student-stage ratios, of a finished run (e.g. runs/default)

Lines `ratio NAME VALUE` (measured in this run, interleaved repeats, median):
- elf_store_over_plain_loop: ELF student training from the store (train_student) / a plain PyTorch loop over
  in-memory tensors doing the same computation (goal <= 1.05);
- elf_kd_store_over_plain_loop: the same with the soft-label term on the stored logits (loss mode
  front_rear_logit_task, the reader opened with logits) / the plain loop with the same term (goal <= 1.05);
- with --compile-cells ARCHS (only these): compiled_over_eager_cell_<arch>_cold and _warm: a whole ELF cell
  (--cell-epochs, 300 by default, its test evaluation included) with students.compile=inductor / eager; cold: a new
  inductor cache folder, compilation included; warm: compiled again from that folder's cache;
- progress_bars_over_off_student_cell, progress_plain_over_off_student_cell: the same ELF cell with the terminal's
  progress display (core/console.py: rich bars, drawn to /dev/null as on a terminal; or plain lines) / with elfdd's
  records dropped (goal < 1.01);
- online_over_cached_student, online_over_cached_sweep10: ELF with the teacher's features recomputed every step /
  read from the cache, for one student and for a 10-student sweep (the sweep pays the extraction once);
- extract_over_bare_forward: elfdd's extraction into a store / the teacher's bare forward pass over the same images
  and views in inference mode (goal <= 1.1);
- rerun_over_first_make_run: `elfdd run` on a finished directory / the first run (smoke config with --quick, the
  default config otherwise; first-run seconds printed too);
- student_stage_over_train_and_eval: that run's student stage retrained as it runs in the pipeline's process
  (bench/stage_time.py: Prefect's server up, the flows imported, the data loaded, as after the stages before it)
  / the sum of its cells' training time and their test evaluation at the bare-forward limit (goal <= 1.10);
  student_cells_over_train_and_eval: the same without the stage's fixed cost (its wall time with every cell kept:
  the flow run, the records, the report), i.e. the per-cell overhead; student_command_over_train_and_eval: the
  stage as `elfdd students --force` in a new process (imports and Prefect's server start-up, about 15 s, included);
- pooled_over_sequential_student_grid (not with --quick): that run's student grid retrained on the local pool
  (`workers` 0: one process per core) / one cell after the other in one process (`workers=1`).
Then `ratio batched_over_sequential_cells_<arch>` (ConvNet, VGG11, AlexNet, MLP, ResNet18): 4 ELF cells trained as one
batched model (pipeline/students/batched.py) / one after the other, in the machine's default precision (students.batching:
auto batches where this is below 1), and `sweep ...` lines: K = 1, 4, 16 cells of one student, sequential and
batched, with their peak memory. Then `scale ...` lines: time and peak memory (the process's peak RSS, reset before each point, and its growth over
the RSS before the point) of extraction and of one ELF student as the synthetic set (IPC) and the stored views grow.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sweep import batched_over_sequential, reset_peak_rss, status_mb
from torch.nn import functional as F

from elfdd.models import adapter_pair, create_model
from elfdd.pipeline import augment
from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import load_data
from elfdd.pipeline.distill import distill
from elfdd.pipeline.extract import TeacherSource, extract_to_store, view_params
from elfdd.pipeline.losses import feature_loss, logit_loss
from elfdd.pipeline.students import Cell, StudentContext, train_cell
from elfdd.pipeline.teachers import build_teacher, load_checkpoint, load_manifest, train_teacher
from elfdd.pipeline.training import (
    configure_threads,
    inference_batch,
    resolve_precision,
    seed_everything,
    sgd_with_half_decay,
)
from elfdd.store.reader import FeatureDataset, FeatureStore, InMemoryFeatures

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def setup(work: Path, ipc: int, views: int, quick: bool):
    """Data, a teacher (checkpointed), a synthetic set (random real images: the values do not change the cost) and
    its store; returns (config, data, synthetic, teacher_dir, manifest, store)."""
    config = load_config(
        None,
        [
            "precision=fp32",
            f"data.train_subset={2000 if quick else 10000}",
            "data.test_subset=500",
            f"distill.ipc={ipc}",
            "distill.iterations=0",
            "teacher.epochs=1",
            "teacher.checkpoint_epochs=[1]",
            f"extract.views={views}",
        ],
    )
    data = load_data(config.data, config.seed)
    teacher_dir = work / "teacher"
    if not (teacher_dir / "manifest.json").exists():
        train_teacher(data, config.teacher, teacher_dir, CPU, "fp32", 0)
    synthetic, _ = distill(data, config.distill, CPU, "fp32", 0)
    manifest = load_manifest(teacher_dir)
    store = work / f"store_ipc{ipc}_v{views}.zarr"
    timed_extract(synthetic, config, manifest, teacher_dir, store)
    return config, data, synthetic, teacher_dir, manifest, store


def plain_elf(
    dataset: FeatureDataset,
    cfg,
    epochs: int,
    teacher: torch.nn.Module | None = None,
    soft_labels: bool = False,
) -> float:
    """The ELF student loop of pipeline/students/train.py written plainly over in-memory tensors (clean view policy:
    fresh DSA, the stored clean feature); with ``teacher``, its features are recomputed every step instead; with
    ``soft_labels``, the KL term on the stored clean logits is added (elf_kd)."""
    memory = InMemoryFeatures(dataset)
    images, features, labels = memory.images, memory.features[:, 0].float(), memory.labels
    stored = FeatureStore(dataset.path).logits(dataset.teacher_id, dataset.epoch)
    logits = torch.from_numpy(np.asarray(stored[:, 0])).float()
    generator = seed_everything(0)
    model = create_model("convnet", images.shape[1], 10, images.shape[-1])
    split = model.default_split
    adapters = adapter_pair(model.feature_shape(tuple(images.shape[1:]), split), dataset.feature_shape)
    optimizer, scheduler = sgd_with_half_decay(
        [*model.parameters(), *adapters.parameters()], cfg.lr, cfg.momentum, cfg.weight_decay, epochs
    )
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            x, y = augment.augment(images[batch], generator)[0], labels[batch]
            if teacher is None:
                target = features[batch]
            else:
                with torch.inference_mode():
                    target = teacher.front(x, "block3").float()
                target = target.clone()
            h = model.front(x, split)
            own = model.rear(h, split)
            loss = (
                F.cross_entropy(own, y)
                + feature_loss("ce", adapters["to_teacher"](h), target)
                + F.cross_entropy(model.rear(adapters["from_teacher"](target), split), y)
            )
            if soft_labels:
                loss = loss + cfg.lambda_logit * logit_loss(own, logits[batch], cfg.logit_temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return time.perf_counter() - started


def elfdd_elf(dataset: FeatureDataset, data, cfg, epochs: int, mode: str = "front_rear_task") -> float:
    job = Cell("convnet", mode, 0, "clean", "ce", 1.0, 1.0, 1, "block3")
    cfg = cfg.model_copy(update={"epochs": epochs})
    ctx = StudentContext(data.x_test, data.y_test, cfg, 10, CPU, "fp32")
    return train_cell(job, dataset, ctx)["train_seconds"]


def with_display(kind: str, run):
    """``run()`` with elfdd's log records shown as the CLI would: ``bars`` (rich bars on a terminal, drawn to
    /dev/null), ``plain`` lines, or ``off`` (no handler, the records dropped)."""
    import logging

    from elfdd.core.console import PLAIN_FORMAT, BarHandler

    def timed() -> float:
        target = logging.getLogger("elfdd")
        level = target.level
        with open(os.devnull, "w") as sink:
            handler: logging.Handler | None = None
            if kind == "bars":
                handler = BarHandler(sink, force_terminal=True)
            elif kind == "plain":
                handler = logging.StreamHandler(sink)
                handler.setFormatter(PLAIN_FORMAT)
            if handler is not None:
                target.addHandler(handler)
                target.setLevel(logging.INFO)
            try:
                return run()
            finally:
                if handler is not None:
                    target.removeHandler(handler)
                    handler.close()
                target.setLevel(level)

    return timed


def compiled_cells(dataset: FeatureDataset, data, cfg, archs: list[str], epochs: int) -> None:
    """A whole ELF cell per architecture (its epochs, its test evaluation) eager, then compiled with inductor (cold:
    a new cache folder, compilation included; warm: compiled again from that folder's cache, as a second process
    would), with the test accuracy of each; `ratio compiled_over_eager_cell_<arch>_{cold,warm}`."""
    import torch._dynamo

    def cell(arch: str, compile_with: str | None) -> tuple[float, float]:
        job = Cell(arch, "front_rear_task", 0, "clean", "ce", 1.0, 1.0, 1, None)
        students = cfg.model_copy(update={"epochs": epochs, "compile": compile_with})
        ctx = StudentContext(data.x_test, data.y_test, students, 10, CPU, "fp32")
        started = time.perf_counter()
        record = train_cell(job, dataset, ctx)
        return time.perf_counter() - started, record["test_acc"]

    cache = tempfile.mkdtemp(prefix="elfdd-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # read when inductor first compiles in this process
    for arch in archs:
        eager, eager_acc = cell(arch, None)
        shutil.rmtree(cache, ignore_errors=True)
        torch._dynamo.reset()
        cold, cold_acc = cell(arch, "inductor")
        torch._dynamo.reset()  # compiles again: the FX graph cache on disk serves it
        warm, warm_acc = cell(arch, "inductor")
        print(
            f"{arch:10s} cell of {epochs} epochs: eager {eager:.1f} s ({100 * eager_acc:.2f} %), compiled cold "
            f"{cold:.1f} s ({100 * cold_acc:.2f} %), warm {warm:.1f} s ({100 * warm_acc:.2f} %)"
        )
        print(f"ratio compiled_over_eager_cell_{arch}_cold {cold / eager:.3f}")
        print(f"ratio compiled_over_eager_cell_{arch}_warm {warm / eager:.3f}")


def median_pair(a, b, repeats: int) -> tuple[float, float]:
    """Interleaved repeats (a, b, a, b, ...) so drift on a noisy machine hits both sides alike."""
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(a())
        times_b.append(b())
    return statistics.median(times_a), statistics.median(times_b)


def bare_forward(
    synthetic, teacher_cfg, manifest, teacher_dir, views: int, view_seed: int, batch: int
) -> float:
    """The teacher's forward pass over every image and view in inference mode, nothing stored, at the fastest of
    the CPU inference batch, the extraction's block size (a store chunk's samples) and ``batch``, so the baseline
    is the limit."""
    from elfdd.store.writer import samples_per_chunk

    shape = tuple(synthetic.images.shape[1:])
    feature = build_teacher(teacher_cfg, shape, synthetic.num_classes).feature_shape(shape, "block3")
    chunk = samples_per_chunk(len(synthetic.images), (views, *feature), (views, synthetic.num_classes))
    sizes = sorted({inference_batch(torch.device("cpu")), min(chunk, batch), batch})
    return min(
        _bare_forward(synthetic, teacher_cfg, manifest, teacher_dir, views, view_seed, b) for b in sizes
    )


def _bare_forward(
    synthetic, teacher_cfg, manifest, teacher_dir, views: int, view_seed: int, batch: int
) -> float:
    model = build_teacher(teacher_cfg, tuple(synthetic.images.shape[1:]), synthetic.num_classes)
    model.load_state_dict(load_checkpoint(teacher_dir, manifest, 1)[0])
    model.eval()
    from elfdd.pipeline.config import ExtractConfig

    params = view_params(
        len(synthetic.images), ExtractConfig(views=views, view_seed=view_seed), synthetic.images.shape[-1]
    )
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(synthetic.images), batch):
            for v in range(views):
                x = augment.apply(synthetic.images[start : start + batch], params[start : start + batch, v])
                model(x)
    return time.perf_counter() - started


def timed_extract(synthetic, config, manifest, teacher_dir, store: Path) -> float:
    shutil.rmtree(store, ignore_errors=True)
    started = time.perf_counter()
    extract_to_store(
        synthetic,
        [TeacherSource(config.teacher, manifest, teacher_dir, [1], ["block3"])],
        store,
        config.extract,
        CPU,
    )
    return time.perf_counter() - started


def make_run_seconds(config_file: Path, out: Path, overrides: list[str]) -> tuple[float, float]:
    """`elfdd run` into a new directory, then again on the finished one."""
    command = [
        str(Path(sys.executable).parent / "elfdd"),
        "run",
        "--config",
        str(config_file),
        "--out",
        str(out),
    ]
    command += [arg for override in overrides for arg in ("--set", override)]
    times = []
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times[0], times[1]


def grid_seconds(run_dir: Path, workers: int, force: bool = True) -> float:
    """`elfdd students DIR --force` (the whole student grid retrained) with ``workers`` (0: auto, the local pool);
    without ``force`` every finished cell is kept."""
    command = [
        str(Path(sys.executable).parent / "elfdd"),
        "students",
        str(run_dir),
        *(["--force"] if force else []),
    ]
    command += ["--set", f"workers={workers}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def stage_in_pipeline(run_dir: Path, overrides: list[str]) -> tuple[float, float]:
    """(forced, kept): the `students` flow of ``run_dir`` retrained / with every cell kept, each timed in one process
    that already runs Prefect and holds the run's data, as the student stage of `elfdd run` (bench/stage_time.py)."""
    command = [sys.executable, str(ROOT / "bench" / "stage_time.py"), str(run_dir)]
    command += [arg for override in overrides for arg in ("--set", override)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    seconds = dict(line.split() for line in out.splitlines() if line.startswith(("forced ", "kept ")))
    return float(seconds["forced"]), float(seconds["kept"])


def student_stage_ratio(run_dir: Path) -> tuple[float, float, float, float, float]:
    """The student stage of ``run_dir`` (workers=1) as it runs in a pipeline (stage_in_pipeline: retrained, and with
    every cell kept), `elfdd students DIR --force` in a new process (its start-up, imports and Prefect server
    included), the sum of the cells' ``train_seconds`` and the sum of their evaluations at the bare-forward limit
    (each cell's architecture over the run's test split in inference mode, the fastest of 16, 64, 256 and all
    images a pass)."""
    import json

    from elfdd.pipeline.stages import Run
    from elfdd.pipeline.training import autocast

    command = grid_seconds(run_dir, 1)
    stage, fixed = stage_in_pipeline(run_dir, ["workers=1"])  # last: the records read below are its cells'
    run = Run(run_dir, load_config(run_dir / "config.yaml")).configured()
    records = [json.loads(p.read_text()) for p in sorted(run.dir.students.glob("*.json"))]
    train = sum(r["train_seconds"] for r in records)
    x_test = run.data.x_test
    limit: dict[str, float] = {}
    for arch in sorted({r["student"] for r in records}):
        model = create_model(arch, x_test.shape[1], run.data.num_classes, x_test.shape[-1]).eval()
        best = float("inf")
        with torch.inference_mode(), autocast(run.device, run.precision):
            for size in sorted({16, 64, 256, len(x_test)}):
                model(x_test[:size])  # warm-up
                started = time.perf_counter()
                for start in range(0, len(x_test), size):
                    model(x_test[start : start + size]).argmax(1)
                best = min(best, time.perf_counter() - started)
        limit[arch] = best
    evaluation = sum(limit[r["student"]] for r in records)
    return stage, fixed, command, train, evaluation


def print_student_stage(run_dir: Path) -> None:
    """The `ratio student_*_over_train_and_eval` lines of ``run_dir``'s student stage (student_stage_ratio)."""
    stage, fixed, command, train, evaluation = student_stage_ratio(run_dir)
    print(
        f"student stage: {stage:.1f} s in the pipeline's process (bench/stage_time.py, retrained), {fixed:.1f} s "
        f"with every cell kept, {command:.1f} s as `elfdd students --force` in a new process; cells' training "
        f"{train:.1f} s, their evaluation at the bare-forward limit {evaluation:.1f} s"
    )
    print(f"ratio student_stage_over_train_and_eval {stage / (train + evaluation):.3f}")
    print(f"ratio student_command_over_train_and_eval {command / (train + evaluation):.3f}")
    print(f"ratio student_cells_over_train_and_eval {(stage - fixed) / (train + evaluation):.3f}")


def scale_point(what: str, ipc: int, views: int, quick: bool, work: Path) -> tuple[float, float, float]:
    """(seconds, peak RSS MB, peak minus the RSS before) of extraction or of one ELF student at this IPC and V; the
    kernel's peak-RSS counter is reset before the work (/proc/self/clear_refs), so the peak is this work's."""
    config, data, synthetic, teacher_dir, manifest, store = setup(work, ipc, views, quick)
    dataset = FeatureDataset(store, config.teacher.id, 1, "block3")
    before = reset_peak_rss()
    if what == "extract":
        seconds = timed_extract(synthetic, config, manifest, teacher_dir, work / "scaled.zarr")
    else:
        seconds = elfdd_elf(dataset, data, config.students, 2 if quick else 10)
    peak = status_mb("VmHWM")
    return seconds, peak, peak - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller work, under 5 minutes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--stage",
        type=Path,
        metavar="RUN_DIR",
        help="only the student-stage ratios, of this finished run directory (e.g. `make run`'s runs/default)",
    )
    parser.add_argument(
        "--compile-cells",
        metavar="ARCHS",
        help="only the compiled/eager ratios of whole ELF cells of these architectures (e.g. convnet,resnet18)",
    )
    parser.add_argument(
        "--cell-epochs", type=int, default=300, help="with --compile-cells: each cell's epochs"
    )
    parser.add_argument(
        "--only-progress",
        action="store_true",
        help="only the progress display's ratios (an ELF cell with bars, plain lines, or no display)",
    )
    parser.add_argument(
        "--only-students",
        action="store_true",
        help="only the first ratios: an ELF and an elf_kd student from the store against the plain loop",
    )
    args = parser.parse_args()
    configure_threads(args.threads)
    if args.stage:
        if not (args.stage / "config.yaml").is_file():
            print(f"error: {args.stage} is not a run directory (no config.yaml)", file=sys.stderr)
            sys.exit(2)
        print_student_stage(args.stage)
        return
    quick = args.quick
    print(
        f"# {time.strftime('%Y-%m-%d')} {platform.machine()} {args.threads} threads torch {torch.__version__} quick={quick}"
    )
    work = Path(tempfile.mkdtemp(prefix="elfdd-perf-"))
    try:
        config, data, synthetic, teacher_dir, manifest, store = setup(work, 10, 4, quick)
        dataset = FeatureDataset(store, config.teacher.id, 1, "block3")
        epochs, repeats = (10, 3) if quick else (60, 3)
        cfg = config.students
        if args.compile_cells:
            compiled_cells(dataset, data, cfg, args.compile_cells.split(","), args.cell_epochs)
            return

        if not args.only_progress:
            ours, plain = median_pair(
                lambda: elfdd_elf(dataset, data, cfg, epochs),
                lambda: plain_elf(dataset, cfg, epochs),
                repeats,
            )
            print(
                f"elf student {epochs} epochs: elfdd from the store {ours:.3f} s, plain in-memory loop {plain:.3f} s"
            )
            print(f"ratio elf_store_over_plain_loop {ours / plain:.3f}")
            # elf_kd: the same with the soft-label term on the stored logits (the reader opened with them)
            with_logits = FeatureDataset(store, config.teacher.id, 1, "block3", with_logits=True)
            ours_kd, plain_kd = median_pair(
                lambda: elfdd_elf(with_logits, data, cfg, epochs, "front_rear_logit_task"),
                lambda: plain_elf(dataset, cfg, epochs, soft_labels=True),
                repeats,
            )
            print(
                f"elf_kd student {epochs} epochs: elfdd from the store {ours_kd:.3f} s, plain in-memory loop "
                f"{plain_kd:.3f} s"
            )
            print(f"ratio elf_kd_store_over_plain_loop {ours_kd / plain_kd:.3f}")
        # The terminal's progress display (core/console.py) against none, on the same ELF cell: a student stage is
        # its cells, and the grid adds one line per finished cell.
        cell = lambda: elfdd_elf(dataset, data, cfg, epochs)  # noqa: E731
        bars, off = median_pair(with_display("bars", cell), with_display("off", cell), repeats)
        plain_lines, _ = median_pair(with_display("plain", cell), lambda: 0.0, repeats)
        print(
            f"elf student {epochs} epochs: progress bars {bars:.3f} s, plain lines {plain_lines:.3f} s, off {off:.3f} s"
        )
        print(f"ratio progress_bars_over_off_student_cell {bars / off:.3f}")
        print(f"ratio progress_plain_over_off_student_cell {plain_lines / off:.3f}")
        if args.only_students or args.only_progress:
            return

        teacher = build_teacher(config.teacher, tuple(synthetic.images.shape[1:]), 10)
        teacher.load_state_dict(load_checkpoint(teacher_dir, manifest, 1)[0])
        teacher.eval()
        cached, online = median_pair(
            lambda: plain_elf(dataset, cfg, epochs), lambda: plain_elf(dataset, cfg, epochs, teacher), repeats
        )
        extract_once = timed_extract(synthetic, config, manifest, teacher_dir, work / "once.zarr")
        print(
            f"elf student: cached features {cached:.3f} s, online teacher {online:.3f} s; extraction {extract_once:.3f} s"
        )
        print(f"ratio online_over_cached_student {online / cached:.3f}")
        print(f"ratio online_over_cached_sweep10 {10 * online / (extract_once + 10 * cached):.3f}")

        # A larger set for extraction, so its throughput, not the store's fixed cost (metadata, checkpoint check), shows.
        ext_config, _, ext_synthetic, _, _, _ = setup(work, 10 if quick else 50, 16 if quick else 8, quick)
        views, extract_batch = ext_config.extract.views, ext_config.extract.batch_size
        extract, bare = median_pair(
            lambda: timed_extract(ext_synthetic, ext_config, manifest, teacher_dir, work / "timed.zarr"),
            lambda: bare_forward(
                ext_synthetic,
                ext_config.teacher,
                manifest,
                teacher_dir,
                views,
                ext_config.extract.view_seed,
                extract_batch,
            ),
            repeats,
        )
        print(
            f"extraction of {len(ext_synthetic.images)} images x {views} views: store {extract:.3f} s, bare forward {bare:.3f} s"
        )
        print(f"ratio extract_over_bare_forward {extract / bare:.3f}")

        config_file = ROOT / "src" / "elfdd" / "configs" / ("smoke.yaml" if quick else "default.yaml")
        overrides = ["students.archs=[convnet]"] if quick else []
        first, rerun = make_run_seconds(config_file, work / "run", overrides)
        print(
            f"elfdd run --config {config_file.name} {' '.join(overrides)}: first {first:.1f} s, re-run {rerun:.1f} s"
        )
        print(f"ratio rerun_over_first_make_run {rerun / first:.3f}")

        print_student_stage(work / "run")

        if (
            not quick
        ):  # about 100 s of pool and Prefect start-up even for a tiny grid: over --quick's 5 minutes
            sequential, pooled = median_pair(
                lambda: grid_seconds(work / "run", 1), lambda: grid_seconds(work / "run", 0), 1
            )
            print(f"student grid: workers=1 {sequential:.1f} s, workers=auto {pooled:.1f} s")
            print(f"ratio pooled_over_sequential_student_grid {pooled / sequential:.3f}")

        # Batched cells: K ELF cells (seeds) of one student, sequential vs one vmapped model, in the machine's default
        # precision (what students.batching: auto decides on).
        precision = resolve_precision(CPU, "auto")
        sweep_cfg = cfg.model_copy(update={"epochs": 3 if quick else 10})
        for arch in ("convnet", "vgg11", "alexnet", "mlp", "resnet18"):
            seq, bat, _, _ = batched_over_sequential(arch, 4, dataset, data, sweep_cfg, precision)
            print(
                f"batched cells {arch} K=4 {sweep_cfg.epochs} epochs {precision}: sequential {seq:.2f} s, batched {bat:.2f} s"
            )
            print(f"ratio batched_over_sequential_cells_{arch} {bat / seq:.3f}")
        for arch in ("convnet", "mlp"):
            for k in (1, 4) if quick else (1, 4, 16):
                seq, bat, seq_mb, bat_mb = batched_over_sequential(
                    arch, k, dataset, data, sweep_cfg, precision
                )
                print(
                    f"sweep {arch} K={k} sequential_seconds={seq:.2f} batched_seconds={bat:.2f} "
                    f"sequential_peak_over_start_mb={seq_mb:.0f} batched_peak_over_start_mb={bat_mb:.0f}"
                )

        ipcs, view_counts = ((1, 10), (1, 8)) if quick else ((1, 10, 50), (1, 8, 32))
        for what in ("extract", "student"):
            for ipc in ipcs:
                for v in view_counts:
                    seconds, peak, grew = scale_point(what, ipc, v, quick, work)
                    print(
                        f"scale {what} ipc={ipc} views={v} seconds={seconds:.3f} "
                        f"peak_rss_mb={peak:.0f} peak_over_start_mb={grew:.0f}"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
