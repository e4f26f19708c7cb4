"""Each stage's key figures as Prefect artifacts of its flow run (tables and the report's markdown)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ..pipeline import stages
from ..pipeline.config import RunConfig
from ..pipeline.report import AXES
from ..pipeline.synthetic import load_synthetic
from ..pipeline.teachers import load_manifest


def artifact_key(kind: str, root: Path | str) -> str:
    """The key of a run directory's ``kind`` artifact (``elfdd-report-default-1a2b3c4d`` for runs/default): one per
    directory, so the latest report of one directory is never another's. Prefect keys are lowercase letters,
    digits and dashes."""
    path = Path(root).resolve()
    name = re.sub(r"[^a-z0-9]+", "-", path.name.lower()).strip("-")[:32] or "run"
    return f"elfdd-{kind}-{name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def _seconds(run: stages.RunDir, stage: str) -> float | None:
    marker = run.stage_marker(stage)
    return json.loads(marker.read_text()).get("seconds") if marker.exists() else None


def publish_distill(run: stages.RunDir) -> None:
    synthetic = load_synthetic(run.synthetic)
    row = {
        "method": synthetic.method,
        "ipc": synthetic.ipc,
        "images": len(synthetic.images),
        "seconds": _seconds(run, "distill"),
        "sha256": synthetic.sha256[:16],
    }
    create_table_artifact(
        [row], key=artifact_key("distill", run.root), description=f"synthetic set {run.synthetic}"
    )


def publish_teacher(run: stages.RunDir, config: RunConfig) -> None:
    """Every teacher's checkpoints (epoch, accuracies, sha256) in one table."""
    rows, seconds = [], []
    for teacher in config.teacher_pool:
        manifest = load_manifest(run.teacher_dir(teacher.id))
        rows += [
            {"teacher": teacher.id, **{k: c[k] for k in ("epoch", "train_acc", "test_acc")}}
            | {"sha256": c["sha256"][:16]}
            for c in manifest["checkpoints"]
        ]
        seconds.append(f"{teacher.id} {_seconds(run, f'teacher-{teacher.id}')} s")
    description = f"teacher checkpoints ({', '.join(seconds)})"
    create_table_artifact(rows, key=artifact_key("teacher", run.root), description=description)


def publish_extract(run: stages.RunDir, config: RunConfig) -> None:
    from ..store.reader import FeatureStore

    store = FeatureStore(run.store)
    rows = []
    for teacher, epoch, layer in (
        (t.id, e, layer)
        for t in config.teacher_pool
        for e in config.extract_epochs_of(t)
        for layer in config.extract_layers_of(t)
    ):
        array = store.features(teacher, epoch, layer)
        rows.append(
            {
                "teacher": teacher,
                "epoch": epoch,
                "layer": layer,
                "shape": "x".join(map(str, array.shape)),
                "dtype": str(array.dtype),
                "raw_mb": round(array.nbytes / 2**20, 3),
                "stored_mb": round(array.nbytes_stored() / 2**20, 3),
            }
        )
    description = f"feature arrays of {run.store} ({_seconds(run, 'extract')} s)"
    create_table_artifact(rows, key=artifact_key("extract", run.root), description=description)


def publish_report(run: stages.RunDir) -> None:
    """The report: a table (key elfdd-summary-<dir>) and the markdown (elfdd-report-<dir>)."""
    results = json.loads(run.results.read_text())
    # Accuracy right after the student and mode, and only the grid axes that vary: the UI's table is as wide as its
    # columns, and a last column of 12 falls off the screen.
    axes = [a for a in AXES if len({json.dumps(s.get(a)) for s in results["summary"]}) > 1]
    rows = [
        {
            "student": s["student"],
            "mode": s["mode"],
            "accuracy_pct": None if s["mean"] is None else round(100 * s["mean"], 2),
            "std_pct": None if s["std"] is None else round(100 * s["std"], 2),
            "n": s["n"],
            "diverged": s.get("diverged", 0),
            **{a: s.get(a) for a in axes},
        }
        for s in results["summary"]
    ]
    create_table_artifact(
        rows, key=artifact_key("summary", run.root), description=f"test accuracy per grid cell, {run.root}"
    )
    create_markdown_artifact(
        embedded_plots(run.report.read_text(), run.plots),
        key=artifact_key("report", run.root),
        description=str(run.report),
    )


PLOT_LINK = re.compile(r"\]\(plots/([A-Za-z0-9_.-]+\.png)\)")


def embedded_plots(markdown: str, plots: Path) -> str:
    """The report with each ``plots/NAME.png`` link replaced by the image itself (a data: URI): the Prefect UI
    shows an artifact away from the run directory, where a relative link is a broken image."""

    def inline(match: re.Match) -> str:
        path = plots / match.group(1)
        if not path.is_file():
            return match.group(0)
        return f"](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return PLOT_LINK.sub(inline, markdown)
