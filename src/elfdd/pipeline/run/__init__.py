"""A run as every stage sees it: its directory layout, config, data and runtime (run.py), the Stage protocol and the
keyed work a re-run keeps (stage.py, keys.py), and the claim on its directory (lock.py).
The stage packages (distill/, teachers/, extract/, students/, report/) build on this; pipeline/stages composes them."""

from .keys import cell_finished, cell_record, finished, mark_finished, stage_key
from .run import (
    Run,
    RunDir,
    data_fingerprint,
    data_for,
    open_run,
    prepare_run,
    read_run_config,
    recorded_checkpoints,
    runtime,
    save_zca,
)
from .stage import KeyedStage, Stage, build_stage

__all__ = [
    "KeyedStage",
    "Run",
    "RunDir",
    "Stage",
    "build_stage",
    "cell_finished",
    "cell_record",
    "data_fingerprint",
    "data_for",
    "finished",
    "mark_finished",
    "open_run",
    "prepare_run",
    "read_run_config",
    "recorded_checkpoints",
    "runtime",
    "save_zca",
    "stage_key",
]
