"""What a finished run holds, checked against the digests recorded when it was made: the synthetic set (its
sha256), each teacher's checkpoints (their manifest), the store (elfdd verify's checks) and the student records
(their schema). A re-run checks the part of a stage it keeps; ``elfdd verify DIR`` checks all of it."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import BadInput
from ...core.io import load_json, sha256_file
from ...store.verify import verify_store
from ..records import read_record
from ..synthetic import load_synthetic
from .run import RunDir, recorded_checkpoints


def synthetic_problems(path: Path) -> list[str]:
    try:
        load_synthetic(path)  # checks the set against its recorded sha256
    except BadInput as exc:
        return [str(exc)]
    return []


def checkpoint_problems(folder: Path) -> list[str]:
    """Each checkpoint of a teacher folder that is missing or no longer has the sha256 of its manifest."""
    manifest = folder / "manifest.json"
    try:
        entries = load_json(manifest, "teacher manifest")["checkpoints"]
        return [
            f"checkpoint {folder / e['file']} is missing or does not match the sha256 in its manifest"
            for e in entries
            if not (folder / e["file"]).is_file() or sha256_file(folder / e["file"]) != e["sha256"]
        ]
    except (BadInput, KeyError, TypeError) as exc:
        return [f"teacher manifest {manifest} is damaged: {exc}"]


def run_problems(run: RunDir) -> list[str]:
    """Every damaged file of the run directory, one line each (empty: sound)."""
    if not run.config.exists():
        raise BadInput(f"{run.root} is neither a store nor a run directory (no config.yaml)")
    problems = synthetic_problems(run.synthetic) if run.synthetic.exists() else []
    for manifest in sorted(run.checkpoints.glob("*/manifest.json")):
        problems += checkpoint_problems(manifest.parent)
    if run.store.exists():
        problems += [f"store.zarr: {p}" for p in verify_store(run.store, recorded_checkpoints(run.store))]
    for record in sorted(run.students.glob("*.json")):
        try:
            read_record(record)
        except BadInput as exc:
            problems.append(str(exc))
    return problems
