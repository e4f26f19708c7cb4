"""Content-keyed stages: unchanged inputs keep a stage's output, a changed input recomputes what depends on it."""

from __future__ import annotations

import json

import pytest
from elfdd.pipeline import stages
from helpers import TINY_RUN, staged_run


@pytest.fixture()
def run_and_config(toy_npz, tmp_path):
    return staged_run(toy_npz, tmp_path / "run", TINY_RUN)


def _stamps(run: stages.RunDir, config) -> dict[str, int]:
    """When each stage last wrote its output (its marker is written after the output, only when it ran)."""
    outputs = {
        "distill": run.synthetic,
        "teacher": run.teacher_dir(config.teacher.id) / "manifest.json",
        "extract": run.store / "teachers" / config.teacher.id / "epoch_0002" / "block3" / "zarr.json",
    }
    return {s: (out.stat().st_mtime_ns, run.stage_marker(s).stat().st_mtime_ns) for s, out in outputs.items()}


def _rerun(run, config, force=False) -> None:
    stages.stage_distill(run, config, force=force)
    stages.stage_teacher(run, config, force=force)
    stages.stage_extract(run, config, force=force)


def test_unchanged_inputs_keep_every_stage(run_and_config):
    run, config = run_and_config
    before = _stamps(run, config)
    students = config.model_copy(deep=True)
    students.students.archs = ["lenet"]  # only the student list changes
    _rerun(run, students)
    assert _stamps(run, config) == before
    markers = {s: json.loads(run.stage_marker(s).read_text()) for s in before}
    assert all(len(m["key"]) == 64 and m["seconds"] >= 0 for m in markers.values())


def test_a_changed_distill_config_recomputes_distill_and_extract_only(run_and_config):
    run, config = run_and_config
    before = _stamps(run, config)
    changed = config.model_copy(deep=True)
    changed.distill.iterations = 5
    _rerun(run, changed)
    after = _stamps(run, config)
    assert after["distill"] != before["distill"] and after["extract"] != before["extract"]
    assert after["teacher"] == before["teacher"]  # the teacher does not depend on the synthetic set


def test_a_changed_teacher_recomputes_teacher_and_extract(run_and_config):
    run, config = run_and_config
    before = _stamps(run, config)
    changed = config.model_copy(deep=True)
    changed.teacher.lr = 0.02
    _rerun(run, changed)
    after = _stamps(run, config)
    assert after["distill"] == before["distill"]
    assert after["teacher"] != before["teacher"] and after["extract"] != before["extract"]


def test_force_recomputes(run_and_config):
    run, config = run_and_config
    before = _stamps(run, config)
    _rerun(run, config, force=True)
    assert all(v != before[k] for k, v in _stamps(run, config).items())
