"""students.protocol: each preset resolves to the values its public code uses, explicit keys override it, and the
resolved protocol reaches results.json and the report."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_RUN

from elfdd.core.errors import BadInput
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config

SGD = {"momentum": 0.9, "weight_decay": 5e-4, "batch_size": 256, "dsa": True, "grad_clip": None}
# (epochs, lr or "learned", number of evaluations) as read from each code base (pipeline/config/protocols.py cites
# the lines): ELF_eval.py --epoch_eval_train 1000 --lr_net 0.01 --num_eval 5; DatasetCondensation main.py
# epoch_eval_train 1000 with DSA, --num_eval 20; MTT distill.py --epoch_eval_train 1000, lr_net = syn_lr, --num_eval 5.
SOURCES = {
    "elfdd": (300, 0.01, 2),
    "elf_reference": (1000, 0.01, 5),
    "dc": (1000, 0.01, 20),
    "mtt": (1000, "learned", 5),
}


@pytest.mark.parametrize("protocol", list(SOURCES))
def test_each_protocol_resolves_to_its_source_s_values(protocol):
    students = load_config(None, [f"students.protocol={protocol}", "distill.method=mtt"]).students
    epochs, lr, evaluations = SOURCES[protocol]
    assert students.protocol == protocol
    assert students.epochs == epochs and students.seeds == list(range(evaluations))
    assert students.lr_from_synthetic == (lr == "learned")
    if lr != "learned":
        assert students.lr == lr
    assert {key: getattr(students, key) for key in SGD} == SGD


def test_the_default_protocol_is_elfdd_s_and_keeps_the_defaults():
    assert load_config(None, []).students == load_config(None, ["students.protocol=elfdd"]).students


def test_explicit_keys_override_the_preset():
    students = load_config(
        None, ["students.protocol=elf_reference", "students.epochs=30", "students.seeds=[3]"]
    ).students
    assert (students.epochs, students.seeds, students.lr) == (30, [3], 0.01)


def test_dc_without_augmentation_trains_300_epochs_as_its_main_py():
    assert load_config(None, ["students.protocol=dc", "students.dsa=false"]).students.epochs == 300


def test_the_mtt_protocol_refuses_a_set_without_a_learned_lr():
    with pytest.raises(BadInput, match="distill.method dm learns none"):
        load_config(None, ["students.protocol=mtt"])


def test_an_unknown_protocol_is_refused_naming_the_choices():
    with pytest.raises(BadInput, match="elf_reference"):
        load_config(None, ["students.protocol=ddranking"])


def test_results_and_report_carry_the_resolved_protocol(toy_npz, tmp_path):
    overrides = ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, "students.archs=[mlp]"]
    config = load_config(None, [*overrides, "students.protocol=elf_reference", "students.epochs=2"])
    run = stages.prepare_run(tmp_path / "run", config)
    for stage in (stages.stage_distill, stages.stage_teacher, stages.stage_extract):
        stage(run)
    for cell in stages.grid(config):
        stages.stage_cell(run, cell)
    stages.stage_report(run)
    protocol = json.loads(run.dir.results.read_text())["protocol"]
    assert protocol["name"] == "elf_reference" and "Lirui-Zhao/ELF" in protocol["source"]
    assert (protocol["epochs"], protocol["lr"], protocol["seeds"]) == (2, 0.01, [0])  # TINY_RUN's seeds
    assert "protocol `elf_reference`" in run.dir.report.read_text()
    # what `device`/`precision: auto` resolved to on this machine, beside the config's "auto"
    runtime = json.loads(run.dir.results.read_text())["runtime"]
    assert runtime["device"] == "cpu" and runtime["precision"] == run.precision in ("fp32", "bf16")
    assert runtime["machine"].endswith(")") and "-core CPU (" in runtime["machine"]
    assert f"Ran on {runtime['machine']}, cpu, {run.precision}." in run.dir.report.read_text()
