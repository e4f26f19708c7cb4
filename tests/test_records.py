"""The cell record: one typed schema for students/<cell>.json and results.json's runs."""

from __future__ import annotations

import json

import pytest
from elfdd.core.errors import BadInput
from elfdd.pipeline.report import build_results
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
