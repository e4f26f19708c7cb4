"""Feature extraction: every view of the synthetic set through every teacher checkpoint, every layer in one pass,
into the Zarr store (features.py), and the extract stage over a run (stage.py)."""

from .features import (
    TeacherSource,
    extract_epoch,
    extract_to_store,
    prepare_store,
    teacher_features,
    view_params,
)
from .stage import (
    Extract,
    MapEpochs,
    extract_run_store,
    extraction_inputs,
    stage_extract,
    stage_extract_epoch,
    teacher_source,
)

__all__ = [
    "Extract",
    "MapEpochs",
    "TeacherSource",
    "extract_epoch",
    "extract_run_store",
    "extract_to_store",
    "extraction_inputs",
    "prepare_store",
    "stage_extract",
    "stage_extract_epoch",
    "teacher_features",
    "teacher_source",
    "view_params",
]
