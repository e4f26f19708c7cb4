"""The pipeline stages over a run directory (layout in docs/design.md); the Prefect flows wrap exactly these.

run           Run: RunDir (the layout), the config, the data and runtime resolved once
stage         the Stage protocol (key, output, build) and build_stage, which keeps work whose inputs' key is unchanged
keys          stage markers and cell records keyed by the sha256 of their inputs
store_stages  the stages Distill -> Teacher (one per teacher) -> Extract: the store the students read
extraction    what an extraction reads (the set, every teacher) and where it writes
grid          the student cells of a config, each paired with its teacher
cells         the stage StudentCell: one student, its store checked against the run, its key, its training
groups        the cells of a grid that train together as one batched model, and the stage of one such group
report_stage  results.json, report.md and plots from the cells (not keyed: rebuilt every time)

The stage_* functions are the entry points the flows, the CLI and bench call: each builds its Stage on a Run.
"""

from .cells import (
    StudentCell,
    cell_key,
    open_cell_datasets,
    open_student_dataset,
    pending_cells,
    stage_student,
    student_config,
    student_store,
)
from .extraction import extract_run_store, extraction_inputs, stage_extract_epoch, teacher_source
from .grid import feature_cell, feature_sources, grid, pair, reference_cell
from .groups import cell_groups, stage_student_group
from .keys import cell_finished, finished, mark_finished, stage_key
from .report_stage import diverged_runs, stage_report, summary_line
from .run import (
    Run,
    RunDir,
    data_fingerprint,
    data_for,
    prepare_run,
    read_run_config,
    recorded_checkpoints,
    runtime,
    save_zca,
)
from .stage import KeyedStage, Stage, build_stage
from .store_fit import check_store_fits
from .store_stages import (
    Distill,
    Extract,
    MapEpochs,
    Teacher,
    stage_distill,
    stage_extract,
    stage_store,
    stage_teacher,
)

__all__ = [
    "Distill",
    "Extract",
    "KeyedStage",
    "Run",
    "Stage",
    "StudentCell",
    "Teacher",
    "build_stage",
    "MapEpochs",
    "RunDir",
    "cell_finished",
    "cell_groups",
    "cell_key",
    "check_store_fits",
    "data_fingerprint",
    "data_for",
    "diverged_runs",
    "extract_run_store",
    "extraction_inputs",
    "feature_cell",
    "feature_sources",
    "finished",
    "grid",
    "mark_finished",
    "open_cell_datasets",
    "open_student_dataset",
    "pair",
    "pending_cells",
    "prepare_run",
    "read_run_config",
    "recorded_checkpoints",
    "reference_cell",
    "runtime",
    "save_zca",
    "stage_distill",
    "stage_extract",
    "stage_extract_epoch",
    "stage_key",
    "stage_report",
    "stage_student",
    "stage_student_group",
    "stage_store",
    "stage_teacher",
    "student_config",
    "student_store",
    "summary_line",
    "teacher_source",
]
