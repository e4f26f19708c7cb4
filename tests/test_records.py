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


def _run(student: str, mode: str, seed: int, acc: float, policy: str | None = "replay") -> dict:
    loss = "task" if mode == "baseline" else "front_rear_task"
    policy = None if mode == "baseline" else policy
    return {
        **RECORD,
        "status": "ok",
        "cell": f"{student}_{mode}_{policy}_{seed}",
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


def test_an_arm_has_one_colour_in_every_plot_and_categories_are_bars(tmp_path, monkeypatch):
    from elfdd.pipeline.report import plots

    calls = []
    real = plots._bars

    def recording(ax, groups, series, colours=None):
        calls.append({label: (colours or {}).get(label) for label in series})
        return real(ax, groups, series, colours)

    monkeypatch.setattr(plots, "_bars", recording)
    runs = [
        _run(student, mode, seed, acc, policy=policy)
        for student in ("convnet", "vgg11")
        for seed in (0, 1)
        for mode, policy, acc in (("baseline", None, 0.6), ("elf", "clean", 0.7), ("elf", "replay", 0.72))
    ]
    results = build_results(
        "v", {"distill": {"arch": "convnet"}}, {"num_classes": 10}, runs, {"view_policy": "clean"}
    )
    results["scores"] = scores(results)
    written = plots.write_plots(results, tmp_path)
    accuracy, gains, views = calls
    assert set(accuracy) == {"baseline", "elf (clean)", "elf (replay)"} and set(gains) == {
        "elf (clean)",
        "elf (replay)",
    }
    assert all(gains[arm] == accuracy[arm] is not None for arm in gains)  # the same colour in both plots
    assert accuracy["baseline"] != accuracy["elf (clean)"] != accuracy["elf (replay)"]
    assert (
        set(views) == {"clean", "replay"} and written["view_policy"] == "view_policy.png"
    )  # bars, not a line


def test_one_seed_shows_no_spread():
    from elfdd.pipeline.report.tables import cell_text, gain_text

    assert cell_text([_run("vgg11", "baseline", 0, 0.6)]) == "60.00 (n=1)"
    assert gain_text((0.05, 0.0, 1)) == "+5.00" and gain_text((0.05, 0.01, 2)) == "+5.00 ± 1.00"
