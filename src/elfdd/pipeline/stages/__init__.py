"""The pipeline's stages, composed: the entry points the flows, the CLI and bench call, each on one :class:`Run`.

    distill/stage.py    Distill: the synthetic set
    teachers/stage.py   Teacher: one per configured teacher, its checkpoints
    extract/stage.py    Extract: every teacher's features in the run's one store
    students/           the grid, the pairing table, one cell (CellStage) or one batched group, their records
    report/stage.py     results.json, report.md, plots (not keyed: rebuilt every time)
    yardstick.py        the random-subset yardstick's run (students.yardstick), for IOR
    teachers/full_data.py  the full-data references (students.full_data), for HLR and LRS
    integrity.py        a finished run checked against its recorded digests (elfdd verify)

Every stage is kept while its inputs' key is unchanged (run/stage.py: build_stage); ``stage_store`` runs the three
stages before the students one after the other.
"""

from __future__ import annotations

import time

from ..distill.stage import Distill, stage_distill
from ..extract import (
    Extract,
    MapEpochs,
    extract_run_store,
    extraction_inputs,
    stage_extract,
    stage_extract_epoch,
    teacher_source,
)
from ..report.stage import diverged_runs, stage_report, summary_table
from ..run import (
    KeyedStage,
    Run,
    RunDir,
    Stage,
    build_stage,
    data_fingerprint,
    data_for,
    finished,
    mark_finished,
    open_run,
    prepare_run,
    read_run_config,
    recorded_checkpoints,
    runtime,
    save_zca,
    stage_key,
)
from ..students import (
    Cell,
    cell_groups,
    cell_key,
    feature_cell,
    grid,
    open_student_dataset,
    pending_cells,
    reference_cell,
    stage_cell,
    stage_cell_group,
)
from ..teachers import Teacher, stage_teacher
from ..teachers.full_data import stage_full_data
from .integrity import run_problems
from .yardstick import stage_run, stage_yardstick, yardstick_config, yardstick_run


def stage_store(run: Run) -> dict[str, float]:
    """Distill, teacher and extract one after the other in this process (each kept when its inputs are unchanged):
    what a study needs before its students. Returns the seconds each stage took."""
    seconds = {}
    for name, stage in (("distill", stage_distill), ("teacher", stage_teacher), ("extract", stage_extract)):
        started = time.perf_counter()
        stage(run)
        seconds[name] = time.perf_counter() - started
    return seconds


__all__ = [
    "Cell",
    "Distill",
    "Extract",
    "KeyedStage",
    "MapEpochs",
    "Run",
    "RunDir",
    "Stage",
    "Teacher",
    "build_stage",
    "cell_groups",
    "cell_key",
    "data_fingerprint",
    "data_for",
    "diverged_runs",
    "summary_table",
    "extract_run_store",
    "extraction_inputs",
    "feature_cell",
    "finished",
    "grid",
    "mark_finished",
    "open_run",
    "open_student_dataset",
    "pending_cells",
    "prepare_run",
    "read_run_config",
    "recorded_checkpoints",
    "reference_cell",
    "run_problems",
    "runtime",
    "save_zca",
    "stage_cell",
    "stage_cell_group",
    "stage_distill",
    "stage_extract",
    "stage_extract_epoch",
    "stage_full_data",
    "stage_key",
    "stage_report",
    "stage_run",
    "stage_store",
    "stage_teacher",
    "stage_yardstick",
    "teacher_source",
    "yardstick_config",
    "yardstick_run",
]
