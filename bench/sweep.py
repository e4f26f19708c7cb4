"""Sweep cost for bench/perf.py: K ELF cells of one student (seeds 0..K-1) trained one after the other
(pipeline/students.train_cell) and as one batched model (pipeline/students.train_group), side by side in
one process, with the peak memory of each (the kernel's peak-RSS counter reset before the work)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from elfdd.pipeline.students import Cell, StudentContext, train_cell, train_group
from elfdd.store.reader import FeatureDataset


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> float:
    """Reset the process's peak-RSS counter (/proc/self/clear_refs) and return the RSS now (MB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def elf_cells(arch: str, k: int) -> list[Cell]:
    return [Cell(arch, "front_rear_task", seed, "clean", "ce", 1.0, 1.0, 1, "block3") for seed in range(k)]


def cells_seconds(
    jobs: list[Cell], dataset: FeatureDataset, data, cfg, precision: str, batched: bool
) -> tuple[float, float]:
    """(wall seconds, peak RSS growth MB) of training and evaluating ``jobs`` one by one or as one batched model."""
    device = torch.device("cpu")
    ctx = StudentContext(data.x_test, data.y_test, cfg, data.num_classes, device, precision)
    before = reset_peak_rss()
    started = time.perf_counter()
    if batched:
        train_group(jobs, [dataset] * len(jobs), ctx)
    else:
        for job in jobs:
            train_cell(job, dataset, ctx)
    return time.perf_counter() - started, status_mb("VmHWM") - before


def batched_over_sequential(
    arch: str, k: int, dataset: FeatureDataset, data, cfg, precision: str, repeats: int = 1
) -> tuple[float, float, float, float]:
    """(sequential s, batched s, sequential peak MB, batched peak MB): the median of interleaved repeats."""
    jobs = elf_cells(arch, k)
    cells_seconds(jobs[:1], dataset, data, cfg.model_copy(update={"epochs": 1}), precision, True)  # warm-up
    runs = [
        (
            cells_seconds(jobs, dataset, data, cfg, precision, False),
            cells_seconds(jobs, dataset, data, cfg, precision, True),
        )
        for _ in range(repeats)
    ]
    runs.sort(key=lambda r: r[1][0] / r[0][0])
    (seq, seq_mb), (bat, bat_mb) = runs[len(runs) // 2]
    return seq, bat, seq_mb, bat_mb
