"""The student stage, one room. Following ``students.archs`` from the config to a trained cell:

    grid.py      the cells of a config (Cell: student x loss mode x feature axes x paired teacher x seed)
    pairing.py   the pairing table: each architecture probed once (models.Anatomy), paired with a teacher and a
                 split per layer; the front-scale rule
    cell.py      one cell as a stage (CellStage): the store it reads, checked against the run; its cache key
    train.py     a cell's setup, its loss terms (elf_losses), the one epoch loop (train_cells) and the typed record
                 it writes (CellRecord, ``students/<cell>.json``)

and beside them batched.py: cells of one architecture trained as one vmapped model, which cells group, the stage of
one group.
"""

from .batched import batchable, cell_groups, stage_cell_group, train_group
from .cell import (
    CellInputs,
    CellStage,
    cell_key,
    cell_training,
    check_store_fits,
    open_student_dataset,
    pending_cells,
    stage_cell,
    student_store,
    students_config,
)
from .grid import Cell, feature_cell, feature_sources, grid, make_cell, reference_cell
from .pairing import Pairing, StudentPlan, pair_student, pairing_table, student_plan
from .train import (
    RUN_KEYS,
    CellRecord,
    CellSetup,
    StudentContext,
    elf_losses,
    outcome,
    read_record,
    setup_cell,
    train_cell,
    train_cells,
)

__all__ = [
    "RUN_KEYS",
    "Cell",
    "CellInputs",
    "CellRecord",
    "CellSetup",
    "CellStage",
    "Pairing",
    "StudentContext",
    "StudentPlan",
    "batchable",
    "cell_groups",
    "cell_key",
    "cell_training",
    "check_store_fits",
    "elf_losses",
    "feature_cell",
    "feature_sources",
    "grid",
    "make_cell",
    "open_student_dataset",
    "pair_student",
    "pairing_table",
    "pending_cells",
    "outcome",
    "read_record",
    "reference_cell",
    "setup_cell",
    "stage_cell",
    "stage_cell_group",
    "student_store",
    "student_plan",
    "students_config",
    "train_cell",
    "train_cells",
    "train_group",
]
