"""The flows' failure handling: transient errors are retried, a permanent failure leaves the run directory
consistent and the flow Failed with its cause; every stage publishes its artifacts."""

from __future__ import annotations

import errno
import json

import pytest
from helpers import TINY_RUN, staged_run

from elfdd.core.errors import BadInput
from elfdd.flows import flows
from elfdd.flows.runner import is_transient
from elfdd.pipeline import stages

GRID = [*TINY_RUN, "students.archs=[convnet,mlp]", "students.loss_modes=[task]"]


@pytest.fixture()
def run(toy_npz, tmp_path):
    run, _ = staged_run(toy_npz, tmp_path / "run", GRID)
    return run


def _failing(monkeypatch, fail) -> list[str]:
    """The flow's cell stage (stage_cell_group) raises ``fail(cell, attempt)`` for the first of its cells where
    that returns an exception; records each call's cells."""
    calls: list[str] = []
    real = stages.stage_cell_group

    def stage_cell_group(run, cells, *args, **kwargs):
        calls.extend(cell.name for cell in cells)
        for cell in cells:
            exc = fail(cell, calls.count(cell.name))
            if exc is not None:
                raise exc
        return real(run, cells, *args, **kwargs)

    monkeypatch.setattr(stages, "stage_cell_group", stage_cell_group)
    return calls


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OSError(errno.EIO, "I/O error"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (FileNotFoundError(errno.ENOENT, "gone"), False),
        (OSError(errno.ENOSPC, "disk full"), False),
        (BadInput("students.archs: unknown"), False),
        (RuntimeError("bug"), False),
    ],
)
def test_which_errors_are_transient(exc, transient):
    assert is_transient(exc) is transient


@pytest.mark.slow
def test_transient_failure_is_retried(run, monkeypatch):
    calls = _failing(
        monkeypatch, lambda job, attempt: OSError(errno.EIO, "flaky disk") if attempt == 1 else None
    )
    state = flows.students_flow(str(run.dir.root), return_state=True)
    assert state.is_completed(), state.message
    assert sorted(calls) == sorted(2 * ["convnet__task__seed0", "mlp__task__seed0"])
    assert len(json.loads(run.dir.results.read_text())["runs"]) == 2


@pytest.mark.parametrize("exc", [RuntimeError("student diverged"), BadInput("bad student input")])
def test_permanent_failure_keeps_finished_work_and_fails_the_flow(run, monkeypatch, exc):
    calls = _failing(monkeypatch, lambda job, attempt: exc if job.student == "mlp" else None)
    state = flows.students_flow(str(run.dir.root), return_state=True)
    assert state.is_failed()
    assert str(exc) in state.message
    assert calls.count("mlp__task__seed0") == 1  # not retried
    finished = json.loads((run.dir.students / "convnet__task__seed0.json").read_text())
    assert finished["cache_key"]  # the other cell ran to its end and is kept
    assert not (run.dir.students / "mlp__task__seed0.json").exists() and not run.dir.results.exists()
    assert not list(run.dir.root.rglob("*.tmp"))


@pytest.mark.slow
def test_stage_flows_publish_artifacts(toy_npz, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from elfdd.pipeline.config import load_config

    config = load_config(None, ["data.name=npz", f"data.path={toy_npz}", *GRID])
    root = str(tmp_path / "run")
    report = flows.elf_pipeline(root, config)
    assert report.endswith("report.md")
    from elfdd.flows.artifacts import artifact_key

    kinds = ["distill", "teacher", "extract", "students", "summary"]
    keys = [artifact_key(kind, root) for kind in kinds]  # this directory's: another run's do not mix in
    assert len(set(keys)) == 5 and artifact_key("report", root) != artifact_key("report", tmp_path / "other")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    latest = {a.key: a for a in sorted(found, key=lambda a: a.created)}
    assert set(latest) == set(keys)
    assert [row["epoch"] for row in json.loads(latest[artifact_key("teacher", root)].data)] == [0, 2]
    extract = json.loads(latest[artifact_key("extract", root)].data)
    assert {(r["epoch"], r["layer"]) for r in extract} == {(0, "block3"), (2, "block3")}
    assert all(r["stored_mb"] > 0 for r in extract)
    progress = latest[artifact_key("students", root)]
    assert progress.type == "progress" and float(progress.data) == 100.0


def test_cli_flow_runs_are_named_by_stage_and_directory_and_tagged(toy_npz, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from elfdd.flows.cli import main

    out = tmp_path / "named"
    sets = [arg for item in ["data.name=npz", f"data.path={toy_npz}", *GRID] for arg in ("--set", item)]
    assert main(["distill", "--out", str(out), *sets]) == 0
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"distill {out}"]))
        )
    (flow_run,) = found
    assert f"run-dir:{out}" in flow_run.tags
    assert any(t.startswith("config:") and len(t) == len("config:") + 12 for t in flow_run.tags)
