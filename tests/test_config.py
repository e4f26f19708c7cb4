"""Typed config: defaults, overrides, one-line errors for bad values (property-based where it pays)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elfdd.core.errors import BadInput
from elfdd.pipeline.config import load_config, validate_config


def test_defaults_and_overrides():
    cfg = load_config(None, ["students.archs=[convnet,mlp]", "distill.ipc=3", "students.lambda_front=0.5"])
    assert (
        cfg.students.archs == ["convnet", "mlp"]
        and cfg.distill.ipc == 3
        and cfg.students.lambda_front == [0.5]
    )
    assert cfg.extract_layers == ["block3"] and cfg.student_teacher_epoch == max(
        cfg.teacher.checkpoint_epochs
    )


@pytest.mark.parametrize(
    "override,field",
    [
        ("students.archs=[vit]", "students.archs"),
        ("distill.ipc=0", "distill.ipc"),
        ("students.lambda_rear=-1", "students.lambda_rear"),
        ("extract.layers=[fc9]", "extract.layers"),
        ("students.teacher_epochs=3", "students.teacher_epochs"),
        ("students.epochs=many", "students.epochs"),
        ("distill.colour=1", "distill.colour"),
        ("teacher.id=../escape", "teacher.id"),
        ("data.name=npz", "data.path"),
    ],
)
def test_bad_values_name_the_field_in_one_line(override, field):
    with pytest.raises(BadInput) as info:
        load_config(None, [override])
    message = str(info.value)
    assert field in message and "\n" not in message


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("students: [unclosed\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_config(path)
    with pytest.raises(BadInput, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_validate():
    from helpers import ROOT

    for name in ("default.yaml", "smoke.yaml"):
        load_config(ROOT / "src" / "elfdd" / "configs" / name)


@settings(max_examples=40, deadline=None)
@given(ipc=st.integers(-5, 50), lam=st.floats(-2, 2, allow_nan=False), epochs=st.integers(-3, 400))
def test_numeric_fields_are_accepted_exactly_when_valid(ipc, lam, epochs):
    raw = {"distill": {"ipc": ipc}, "students": {"lambda_front": lam, "epochs": epochs}}
    valid = ipc > 0 and lam >= 0 and epochs >= 1
    if valid:
        cfg = validate_config(raw)
        assert cfg.distill.ipc == ipc
    else:
        with pytest.raises(BadInput):
            validate_config(raw)


@pytest.mark.parametrize("old", ["modes", "feature_loss", "teacher_epoch", "layer"])
def test_an_old_students_key_is_refused_naming_it(old):
    """The singular names of 0.1 are gone (no key is kept for history): one line names the key."""
    with pytest.raises(BadInput, match=f"config students.{old}: Extra inputs are not permitted"):
        load_config(None, [f"students.{old}=[x]"])


def test_a_packaged_config_is_addressable_by_name_from_any_directory(tmp_path, monkeypatch):
    from helpers import ROOT

    from elfdd.pipeline.config.load import load_config, packaged_configs

    monkeypatch.chdir(tmp_path)
    assert set(packaged_configs()) == {"default", "smoke", "study"}
    assert load_config("smoke") == load_config(ROOT / "src" / "elfdd" / "configs" / "smoke.yaml")
    with pytest.raises(
        BadInput, match=r"config nope: no such file, and no packaged config of that name \(default"
    ):
        load_config("nope")
    (tmp_path / "smoke").write_text("seed: 7\n")  # a file of that name here wins
    assert load_config("smoke").seed == 7


def test_every_config_field_has_a_description_for_the_run_form():
    from elfdd.pipeline.config import RunConfig

    schema = RunConfig.model_json_schema()
    models = [("RunConfig", schema), *schema.get("$defs", {}).items()]
    missing = [f"{name}.{field}" for name, model in models for field, spec in model.get("properties", {}).items()
               if not spec.get("description")]  # fmt: skip
    assert missing == []
    assert len([1 for _, model in models for _ in model.get("properties", {})]) > 100


def test_the_config_reference_page_is_current():
    """docs/config.md is written from RunConfig's fields and descriptions; a field added or described anew without
    writing it again fails here."""
    from helpers import ROOT

    from elfdd.pipeline.config.reference import config_reference

    assert (ROOT / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale: python -m elfdd.pipeline.config.reference > docs/config.md"
    )
