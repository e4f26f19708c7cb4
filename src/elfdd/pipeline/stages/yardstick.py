"""The random-subset yardstick (``students.yardstick: random``; DD-Ranking's IOR): the run's student grid trained the
same way on a class-balanced random subset of the real training set at the set's IPC, in its own run
``DIR/yardstick/`` — distill (method random), teachers (this run's checkpoints, imported: the same weights), extract
(their features and logits of the random images), students, report. The run's report pairs the two by student, arm
and seed (report/scores.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig
from ..distill.stage import stage_distill
from ..extract import stage_extract
from ..report.stage import stage_report
from ..run import Run, prepare_run
from ..students import cell_groups, grid, stage_cell_group
from ..synthetic import load_synthetic
from ..teachers import stage_teacher
from ..teachers.full_data import stage_full_data
from ..teachers.train import checkpoint_name


def yardstick_config(run: Run) -> RunConfig:
    """The run's config for the random subset: distill ``random`` at the set's own IPC (an imported set's too), the
    teachers imported from this run's checkpoints, no yardstick of its own."""
    config = run.config
    ipc = load_synthetic(run.dir.synthetic).ipc
    raw = config.model_dump(mode="json")
    raw["distill"] = {
        **raw["distill"],
        "method": "random",
        "ipc": ipc,
        "init": "real",
        "metadd": {**raw["distill"]["metadd"], "enabled": False},
    }
    raw["teacher"] = None
    raw["teachers"] = [
        {
            **teacher.model_dump(mode="json"),
            "source": "checkpoint",
            "paths": [
                str(run.dir.teacher_dir(teacher.id).resolve() / checkpoint_name(e))
                for e in teacher.checkpoint_epochs
            ],
            "trajectory": 0,
        }
        for teacher in config.teacher_pool
    ]
    raw["students"] = {**raw["students"], "yardstick": None, "full_data": None}
    return RunConfig.model_validate(raw)


def yardstick_run(run: Run) -> Run:
    """The yardstick's run directory (``DIR/yardstick/``) with its config written; needs the run's synthetic set and
    teacher checkpoints."""
    return prepare_run(run.dir.yardstick, yardstick_config(run))


def stage_run(
    run: Run,
    force: bool = False,
    on_cell: Callable[[Path], None] | None = None,
    on_grid: Callable[[int], None] | None = None,
) -> Path:
    """Every stage of ``run`` in this process, each kept while its inputs are unchanged: distill, teachers, extract,
    the yardstick's run, the cells (by batched groups; ``on_grid`` gets the number of cells as they start,
    ``on_cell`` each record's path), the full-data references, the report (its path)."""
    stage_distill(run, force)
    stage_teacher(run, force)
    stage_extract(run, force)
    stage_yardstick(run, force)
    cells = grid(run.config)
    if on_grid is not None:
        on_grid(len(cells))
    for group in cell_groups(run.config, cells):
        for path in stage_cell_group(run, group, force):
            if on_cell is not None:
                on_cell(path)
    if run.config.students.full_data is not None:
        stage_full_data(run)
    return stage_report(run)


def stage_yardstick(run: Run, force: bool = False) -> Run | None:
    """Every stage of the yardstick's run in this process; None when the run has no yardstick."""
    if run.config.students.yardstick is None:
        return None
    sub = yardstick_run(run)
    stage_run(sub, force)
    return sub
