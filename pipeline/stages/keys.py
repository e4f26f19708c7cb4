"""Work keyed by the sha256 of its inputs: a stage's marker (``stages/<stage>.json``) and a student cell's record carry
the key they were made from; a later run keeps them while the key is the same."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...core.io import (
    atomic_write_json,
    json_sha256,
    load_json,
)
from ..training import log
from .run import RunDir


def stage_key(*parts: Any) -> str:
    """sha256 of a stage's inputs (configs, fingerprints, runtime)."""
    return json_sha256(list(parts))


def finished(run: RunDir, stage: str, key: str, output: Path) -> bool:
    """Whether ``stage`` already produced ``output`` from the inputs ``key`` stands for."""
    marker = run.stage_marker(stage)
    if not marker.exists() or not output.exists():
        return False
    if load_json(marker, f"{stage} stage marker").get("key") != key:
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


def cell_finished(path: Path, key: str) -> bool:
    return path.exists() and load_json(path, "student run").get("cache_key") == key
