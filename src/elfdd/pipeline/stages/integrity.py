"""What a finished run holds, checked against the digests recorded when it was made: the synthetic set (its
sha256), each teacher's checkpoints (their manifest), the store (elfdd verify's checks) and the student records
(their schema). A re-run checks the part of a stage it keeps; ``elfdd verify DIR`` checks all of it."""

from __future__ import annotations

from ...core.errors import BadInput
from ...store.verify import verify_store
from ..run import RunDir, recorded_checkpoints
from ..students import read_record
from ..synthetic import synthetic_problems
from ..teachers import checkpoint_problems


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
