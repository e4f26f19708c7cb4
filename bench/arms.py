"""What the studies share: one store built from a config, arms (students.* overrides) trained from it, each in its
own run directory, finished cells kept and baselines an earlier arm finished reused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``LABEL=KEY=VALUE[;KEY=VALUE...]`` -> (label, overrides)."""
    label, sep, overrides = text.partition("=")
    if not sep or not label.isidentifier():
        raise SystemExit(f"--arm expects LABEL=KEY=VALUE[;KEY=VALUE...], got {text!r}")
    return label, [o for o in overrides.split(";") if o]


def build_store(run_dir: Path, config_path: str, overrides: list[str]) -> tuple[stages.Run, dict[str, float]]:
    """The config's store (distill, teachers, extract; each kept when unchanged) and the seconds each stage took."""
    config = load_config(config_path, overrides)
    run = stages.prepare_run(run_dir, config)
    seconds = stages.stage_store(run)
    print("# " + ", ".join(f"{name}: {value:.0f} s" for name, value in seconds.items()), flush=True)
    return run, seconds


def reuse_baselines(run: stages.Run, config, jobs: list, done: list[stages.Run]) -> None:
    """Copy the baseline cells an earlier arm finished with this arm's cache key (not, e.g., a 300-epoch baseline
    into an arm that trains 1000 epochs: such a copy is removed again, never left beside the arm's own runs)."""
    copied = []
    for job in jobs:
        if job.uses_features or run.dir.record_of(job.name).exists():
            continue
        for other in done:
            if other.dir.record_of(job.name).exists():
                run.dir.students.mkdir(parents=True, exist_ok=True)
                shutil.copy2(other.dir.record_of(job.name), run.dir.record_of(job.name))
                copied.append(job)
                break
    for job in stages.pending_cells(run, copied):  # copied, but under another cache key
        run.dir.record_of(job.name).unlink()


def train_arm(
    run_dir: Path, config_path: str, store: Path, label: str, overrides: list[str], done: list[stages.Run]
) -> stages.Run:
    """The config's grid with the arm's overrides, trained from ``store`` in ``run_dir`` (cells of an earlier, killed
    run kept); writes its report. Diverged cells are recorded, never fatal."""
    sets = [*overrides, "students.on_diverge=record", f"students.store={store.resolve()}"]
    config = load_config(config_path, sets)
    run = stages.prepare_run(run_dir, config)
    reuse_baselines(run, config, stages.grid(config), done)
    train_grid(run, label)
    return run


def train_grid(run: stages.Run, label: str) -> None:
    """Every cell of the run's grid (finished ones kept), a line as each ends, then the run's report."""
    cells = stages.grid(run.config)
    started = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        record = json.loads(stages.stage_cell(run, cell).read_text())
        outcome = "diverged" if record["test_acc"] is None else f"{100 * record['test_acc']:.2f} %"
        print(f"# {label} {i}/{len(cells)} {cell.name}: {outcome}", flush=True)
    stages.stage_report(run)
    print(f"# {label}: students {time.perf_counter() - started:.0f} s", flush=True)
