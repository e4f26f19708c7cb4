"""The record of one student cell (``students/<cell>.json`` and each entry of results.json's ``runs``): one typed
schema, written by the student stage and validated where the report reads it (docs/design.md, results.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ...core.errors import BadInput
from ...core.io import load_json


class Diverged(BaseModel):
    """The first non-finite loss term of a cell that diverged (``students.on_diverge: record``)."""

    term: str
    epoch: int
    value: str


class CellLoss(BaseModel):
    mode: str
    feature_loss: str | None = None
    lambda_front: float | None = None
    lambda_rear: float | None = None


class CellRecord(BaseModel):
    """One trained cell. Feature fields (teacher_id ... rear_relu) are None for a baseline; ``test_acc`` is None for
    a cell that diverged."""

    model_config = ConfigDict(
        extra="allow"
    )  # the student stage adds its ``axes`` (the grid cell) and ``cache_key``

    cell: str
    student: str
    mode: str  # "baseline" (loss mode task), "elf" (front_rear_task), else the loss mode
    loss: CellLoss | None = None
    teacher_id: str | None = None
    teacher_epoch: int | None = None
    layer: str | None = None
    view_policy: str | None = None
    views: int | None = None
    student_split: str | None = None
    adapted: bool | None = None
    front_scale: float | None = None  # lambda_front's factor (students.vector_front_scale for a vector front)
    rear_relu: bool | None = None
    seed: int
    epochs: int
    lr: float
    status: Literal["ok", "diverged"] = "ok"
    diverged: Diverged | None = None
    test_acc: float | None
    train_seconds: float  # a batched group's training time shared evenly among its cells
    # the last step's loss terms (each weighted by its lambda) at every logged epoch: [{epoch, task, front, ...}]
    loss_curve: list[dict[str, int | float]] = []
    group_size: int = 1  # the cells trained together as one batched model (batched.py), itself included
    cache_key: str | None = None


RUN_KEYS = tuple(CellRecord.model_fields)  # the fields of results.json's runs, in this order


def read_record(path: Path) -> dict[str, Any]:
    """A cell's record file, validated (bad input names the file and the field)."""
    raw = load_json(path, "student run")
    try:
        return CellRecord.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise BadInput(f"student run {path}: {where}: {error['msg']}") from None
