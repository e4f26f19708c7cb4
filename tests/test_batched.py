"""Cells trained as one batched model (pipeline/students/batched.py): the same per-cell loss curves and accuracies as the
sequential path, a diverged cell that does not touch the others, the grouping rule, and a killed group that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import TINY_RUN, staged_run

from elfdd.models import anatomy_of, list_models
from elfdd.pipeline import stages
from elfdd.pipeline.students import CellInputs, batchable, train_cell, train_group

# Three cells that differ in seed, lambda and teacher epoch: one group.
AXES = [
    "students.seeds=[0,1]",
    "students.epochs=3",
    "students.grad_clip=1",
    "students.lambda_front=[1,0.5]",
    "students.teacher_epochs=[0,2]",
    "students.loss_modes=[front_rear_task]",
    "extract.views=4",
    "students.view_policies=[replay]",
]
BATCHABLE = [name for name in list_models() if batchable(anatomy_of(name, (1, 28, 28), 4).kinds)]


def _group(config, arch: str):
    jobs = [j for j in stages.grid(config) if j.student == arch]
    picked = [jobs[0], *(j for j in jobs if j.seed == 1 and j.lambda_front == 0.5 and j.teacher_epoch == 0)]
    picked.append(next(j for j in jobs if j.seed == 0 and j.teacher_epoch == 2 and j.lambda_front == 1))
    assert len({(j.seed, j.lambda_front, j.teacher_epoch) for j in picked}) == 3
    return picked


def _train(run, config, jobs, batched: bool):
    run = run.configured()
    inputs = CellInputs(run, jobs)
    readers = [inputs.stage(job).dataset for job in jobs]
    ctx = inputs.context(run)
    if batched:
        return train_group(jobs, readers, ctx)
    return [train_cell(job, reader, ctx) for job, reader in zip(jobs, readers, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("arch", BATCHABLE)
def test_a_batched_group_of_3_cells_equals_3_sequential_runs(arch, toy_npz, tmp_path):
    run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, f"students.archs=[{arch}]", *AXES])
    jobs = _group(config, arch)
    sequential, batched = _train(run, config, jobs, False), _train(run, config, jobs, True)
    for alone, together in zip(sequential, batched, strict=True):
        assert together["cell"] == alone["cell"] and together["group_size"] == 3 and alone["group_size"] == 1
        assert [p["epoch"] for p in together["loss_curve"]] == [1, 2, 3]
        for a, b in zip(alone["loss_curve"], together["loss_curve"], strict=True):
            assert a.keys() == b.keys()
            assert all(b[t] == pytest.approx(a[t], rel=1e-4, abs=1e-5) for t in a)
        assert together["test_acc"] == pytest.approx(alone["test_acc"], abs=1 / 40 + 1e-9)  # one test image
    assert len({r["loss_curve"][-1]["task"] for r in batched}) == 3  # the cells really differ


def test_a_diverging_cell_leaves_the_rest_of_its_group_exact(toy_npz, tmp_path):
    overrides = [
        *TINY_RUN,
        "students.archs=[mlp]",
        "students.seeds=[0,1,2]",
        "students.lambda_front=[1,1e38]",
    ]
    run, config = staged_run(toy_npz, tmp_path / "run", [*overrides, "students.loss_modes=[front_rear_task]"])
    jobs = [j for j in stages.grid(config) if j.seed in (0, 1) and j.lambda_front == 1]
    jobs.append(next(j for j in stages.grid(config) if j.lambda_front == 1e38))
    batched = _train(run, config, jobs, True)
    assert [r["status"] for r in batched] == ["ok", "ok", "diverged"]
    assert batched[2]["test_acc"] is None and batched[2]["diverged"]["term"] == "front"
    for alone, together in zip(_train(run, config, jobs[:2], False), batched[:2], strict=True):
        assert together["loss_curve"][-1]["task"] == pytest.approx(alone["loss_curve"][-1]["task"], rel=1e-4)
        assert together["test_acc"] == pytest.approx(alone["test_acc"], abs=1 / 40 + 1e-9)


@pytest.mark.parametrize("name", list_models())
def test_the_grouping_rule(name, toy_npz, tmp_path):
    from elfdd.pipeline.config import load_config

    base = [
        "device=cpu",
        "data.name=npz",
        f"data.path={toy_npz}",
        f"students.archs=[{name}]",
        "students.seeds=[0,1,2]",
    ]
    grid = stages.grid(load_config(None, base))
    sizes = {
        mode: sorted(len(g) for g in stages.cell_groups(load_config(None, [*base, *extra]), grid))
        for mode, extra in {
            "on": ["students.batching=true", "students.max_group=2"],
            "off": ["students.batching=false"],
            "auto": [],
        }.items()
    }
    assert sizes["off"] == [1] * 6
    together = name in BATCHABLE  # per loss mode (baseline, ELF): 3 seeds, at most 2 a group
    assert sizes["on"] == ([1, 1, 2, 2] if together else [1] * 6)
    assert sizes["auto"] == ([3, 3] if name == "mlp" else [1] * 6)  # the CPU batches the MLP only


CHILD = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO)
from elfdd.pipeline import stages
run = stages.open_run(Path(sys.argv[1]))
for group in stages.cell_groups(run.config, stages.grid(run.config)):
    stages.stage_cell_group(run, group)
"""


@pytest.mark.slow
def test_a_killed_batched_group_resumes(toy_npz, tmp_path):
    """SIGKILL inside the second group: the first group's records are kept untouched, the re-run trains the second
    from the start, and every record equals an uninterrupted run's."""
    grid = [
        *TINY_RUN,
        "students.archs=[mlp,convnet]",
        "students.loss_modes=[task]",
        "students.seeds=[0,1,2]",
        "students.batching=true",
        "students.epochs=40",
    ]
    runs = {name: staged_run(toy_npz, tmp_path / name, grid)[0] for name in ("whole", "killed")}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", CHILD, str(runs["whole"].dir.root)], check=True, env=env)
    killed = runs["killed"]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(killed.dir.root)], env=env)
    deadline = time.monotonic() + 120
    while len(list(killed.dir.students.glob("mlp__*.json"))) < 3:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = {p: p.stat().st_mtime_ns for p in killed.dir.students.glob("*.json")}
    assert len(kept) == 3, "the kill landed outside the ConvNet group"
    subprocess.run(
        [sys.executable, "-c", CHILD, str(killed.dir.root)], check=True, env=env, capture_output=True
    )
    assert {p: p.stat().st_mtime_ns for p in kept} == kept

    def records(run):
        return {p.name: json.loads(p.read_text()) for p in sorted(run.dir.students.glob("*.json"))}

    whole, resumed = records(runs["whole"]), records(killed)
    assert whole.keys() == resumed.keys() and len(whole) == 6
    for name, record in whole.items():
        assert resumed[name]["test_acc"] == record["test_acc"] and resumed[name]["group_size"] == 3
        assert resumed[name]["loss_curve"] == record["loss_curve"]
    assert not list(killed.dir.root.rglob("*.tmp"))
