"""A run's keyed work (core.keyed): a stage's marker (``stages/<stage>.json``) and a student cell's record carry the
key they were made from; a later run keeps them while the key is the same."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...core.io import atomic_write_json
from ...core.keyed import holds_key, key_of, keyed_record
from ..training import log
from .run import RunDir


def stage_key(*parts: Any) -> str:
    """sha256 of a stage's inputs (configs, fingerprints, runtime)."""
    return key_of(*parts)


def finished(run: RunDir, stage: str, key: str, output: Path) -> bool:
    """Whether ``stage`` already produced ``output`` from the inputs ``key`` stands for."""
    if not output.exists() or not holds_key(run.stage_marker(stage), key, what=f"{stage} stage marker"):
        return False
    log.info("%s: inputs unchanged (key %s), kept %s", stage, key[:12], output)
    return True


def mark_finished(run: RunDir, stage: str, key: str, output: Path, started: float) -> None:
    record = {
        "stage": stage,
        "key": key,
        "output": str(output),
        "seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write_json(run.stage_marker(stage), record)


def cell_record(path: Path, key: str) -> dict[str, Any] | None:
    """A student cell's record when it was made under ``key`` (its ``cache_key``), else None."""
    return keyed_record(path, key, field="cache_key", what="student run")


def cell_finished(path: Path, key: str) -> bool:
    return cell_record(path, key) is not None
