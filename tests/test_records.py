"""The cell record: one typed schema for students/<cell>.json and results.json's runs."""

from __future__ import annotations

import json

import pytest
from elfdd.core.errors import BadInput
from elfdd.pipeline.report import build_results, scores
from elfdd.pipeline.report.sections import scores_section
from elfdd.pipeline.students import RUN_KEYS, CellRecord, read_record

RECORD = {
    "cell": "mlp__task__seed0",
    "student": "mlp",
    "mode": "baseline",
    "loss": {"mode": "task", "feature_loss": None, "lambda_front": None, "lambda_rear": None},
    "seed": 0,
    "epochs": 2,
    "lr": 0.01,
    "test_acc": 0.5,
    "train_seconds": 1.0,
    "job": {"student": "mlp"},
    "cache_key": "k",
}


def test_a_record_file_is_read_validated_and_keeps_its_extra_fields(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(RECORD))
    record = read_record(path)
    assert record["job"] == {"student": "mlp"} and record["status"] == "ok" and record["teacher_id"] is None
    assert list(build_results("v", {}, {}, [record], {})["runs"][0]) == list(RUN_KEYS)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("test_acc", "high", "test_acc"), ("status", "lost", "status"), ("seed", None, "seed")],
)
def test_a_damaged_record_is_bad_input_naming_file_and_field(tmp_path, field, value, message):
    path = tmp_path / "cell.json"
    path.write_text(json.dumps({**RECORD, field: value}))
    with pytest.raises(BadInput, match=f"student run {path}: {message}"):
        read_record(path)


def test_run_keys_are_the_record_s_fields():
    assert tuple(CellRecord.model_fields) == RUN_KEYS and "test_acc" in RUN_KEYS and "job" not in RUN_KEYS


def _run(student: str, mode: str, seed: int, acc: float) -> dict:
    loss = "task" if mode == "baseline" else "front_rear_task"
    policy = None if mode == "baseline" else "replay"
    return {
        **RECORD,
        "status": "ok",
        "cell": f"{student}_{mode}_{seed}",
        "student": student,
        "mode": mode,
        "seed": seed,
        "test_acc": acc,
        "view_policy": policy,
        "loss": {**RECORD["loss"], "mode": loss},
    }


def test_the_architecture_gap_is_the_distillation_architecture_s_baseline_minus_the_student_paired_by_seed():
    runs = [
        _run("convnet", "baseline", 0, 0.80),
        _run("convnet", "baseline", 1, 0.70),
        _run("vgg11", "baseline", 0, 0.60),
        _run("vgg11", "baseline", 1, 0.60),
        _run("vgg11", "elf", 0, 0.75),
        _run("vgg11", "elf", 1, 0.75),
        _run("mlp", "elf", 2, 0.50),  # no convnet baseline at seed 2: not paired
    ]
    reference = {"view_policy": "replay"}
    results = build_results("v", {"distill": {"arch": "convnet"}}, {}, runs, reference)
    results["scores"] = scores(results)
    gaps = {(g["student"], g["arm"]): g for g in results["scores"]["architecture_gap"]}
    assert set(gaps) == {("convnet", "baseline"), ("vgg11", "baseline"), ("vgg11", "elf (replay)")}
    assert gaps[("convnet", "baseline")]["mean"] == 0.0
    assert (
        gaps[("vgg11", "baseline")]["mean"] == pytest.approx(0.15) and gaps[("vgg11", "baseline")]["n"] == 2
    )
    elf = gaps[("vgg11", "elf (replay)")]
    assert elf["mean"] == pytest.approx(0.0) and elf["std"] == pytest.approx(0.05)  # +0.05 and -0.05
    section = "\n".join(scores_section(results))
    assert (
        "## Architecture gap" in section and "| vgg11 | +15.00 ± 5.00 (n=2) | +0.00 ± 5.00 (n=2) |" in section
    )


def test_the_report_plots_the_architecture_gap(tmp_path):
    from elfdd.pipeline.report.plots import write_plots

    runs = [
        _run(student, "baseline", seed, acc)
        for student, acc in (("convnet", 0.8), ("vgg11", 0.7))
        for seed in (0, 1)
    ]
    reference = {"view_policy": None}
    results = build_results("v", {"distill": {"arch": "convnet"}}, {}, runs, reference)
    results["scores"] = scores(results)
    written = write_plots(results, tmp_path)
    assert written["architecture_gap"] == "architecture_gap.png"
    assert (tmp_path / "architecture_gap.png").stat().st_size > 5000
