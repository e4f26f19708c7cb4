"""Content-keyed stages: unchanged inputs keep a stage's output, a changed input recomputes what depends on it."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_RUN, reference_job, staged_run

from elfdd.pipeline import stages


@pytest.fixture()
def run_and_config(toy_npz, tmp_path):
    return staged_run(toy_npz, tmp_path / "run", TINY_RUN)


def _stamps(run: stages.Run, config) -> dict[str, int]:
    """When each stage last wrote its output (its marker is written after the output, only when it ran)."""
    outputs = {
        "distill": run.dir.synthetic,
        "teacher": run.dir.teacher_dir(config.teacher.id) / "manifest.json",
        "extract": run.dir.store / "teachers" / config.teacher.id / "epoch_0002" / "block3" / "zarr.json",
    }
    return {
        s: (out.stat().st_mtime_ns, run.dir.stage_marker(_marker(s, config)).stat().st_mtime_ns)
        for s, out in outputs.items()
    }


def _marker(stage: str, config) -> str:
    """Each teacher has its own stage marker (teacher-<id>)."""
    return f"teacher-{config.teacher.id}" if stage == "teacher" else stage


def _rerun(run, config, force=False) -> None:
    run = stages.Run(run.dir, config)
    stages.stage_distill(run, force=force)
    stages.stage_teacher(run, force=force)
    stages.stage_extract(run, force=force)


def test_unchanged_inputs_keep_every_stage(run_and_config):
    run, config = run_and_config
    before = _stamps(run, config)
    students = config.model_copy(deep=True)
    students.students.archs = ["lenet"]  # only the student list changes
    _rerun(run, students)
    assert _stamps(run, config) == before
    markers = {s: json.loads(run.dir.stage_marker(_marker(s, config)).read_text()) for s in before}
    assert all(len(m["key"]) == 64 and m["seconds"] >= 0 for m in markers.values())


@pytest.mark.parametrize(
    "section,field,value,recomputed",
    [
        # the teacher does not depend on the synthetic set
        ("distill", "iterations", 5, {"distill", "extract"}),
        ("teacher", "lr", 0.02, {"teacher", "extract"}),
    ],
)
def test_a_changed_input_recomputes_only_what_depends_on_it(
    run_and_config, section, field, value, recomputed
):
    run, config = run_and_config
    before = _stamps(run, config)
    changed = config.model_copy(deep=True)
    setattr(getattr(changed, section), field, value)
    _rerun(run, changed)
    after = _stamps(run, config)
    assert {s for s in before if after[s] != before[s]} == recomputed


def test_force_recomputes(run_and_config):
    run, config = run_and_config
    before = _stamps(run, config)
    _rerun(run, config, force=True)
    assert all(v != before[k] for k, v in _stamps(run, config).items())


def test_keyed_work_is_kept_only_under_the_same_key(tmp_path):
    """core.keyed: the one check behind stage markers, cell records and the experts' manifest."""
    import json

    from elfdd.core.errors import BadInput
    from elfdd.core.keyed import holds_key, key_of

    key = key_of({"a": 1}, "fp32")
    assert key == key_of({"a": 1}, "fp32") != key_of({"a": 2}, "fp32")
    marker = tmp_path / "stage.json"
    assert not holds_key(marker, key)  # missing: recompute
    marker.write_text(json.dumps({"key": key, "cache_key": "other"}))
    assert holds_key(marker, key) and not holds_key(marker, key, field="cache_key")
    marker.write_text("{not json")
    with pytest.raises(BadInput, match="is not valid JSON"):
        holds_key(marker, key, what="stage marker")


def test_a_new_key_schema_recomputes_every_stage_and_cell_once(run_and_config, monkeypatch):
    """Keys are made of their inputs and KEY_SCHEMA: raising it (what a key covers changed) recomputes a run made
    under the old one, once; the outputs are the same bytes (the inputs are)."""
    run, config = run_and_config
    job = reference_job(config, "convnet", "front_rear_task", 0)
    record = stages.stage_cell(run, job)
    synthetic, before = _content(run), _stamps(run, config)
    old_key = json.loads(record.read_text())["cache_key"]
    monkeypatch.setattr("elfdd.core.keyed.KEY_SCHEMA", 99)
    _rerun(run, config)
    after = _stamps(run, config)
    assert all(after[s] != before[s] for s in before) and _content(run) == synthetic
    assert json.loads(stages.stage_cell(run, job).read_text())["cache_key"] != old_key
    again = _stamps(run, config)
    _rerun(run, config)  # once: the new keys are kept
    assert _stamps(run, config) == again


def _content(run: stages.Run) -> str:
    import torch

    return torch.load(run.dir.synthetic, weights_only=True)["sha256"]
