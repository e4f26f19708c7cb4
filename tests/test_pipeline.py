"""Stages on tiny data: DM, teacher checkpoints, extraction, ELF loss modes and feature losses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, reference_job, staged_run

from elfdd.core.errors import BadInput
from elfdd.pipeline import stages
from elfdd.pipeline.losses import LOSS_TERMS, feature_loss, list_feature_losses
from elfdd.pipeline.synthetic import load_synthetic
from elfdd.store.reader import FeatureStore

TINY = TINY_RUN


@pytest.fixture(scope="module")
def tiny_run(toy_npz, tmp_path_factory):
    run, config = staged_run(toy_npz, tmp_path_factory.mktemp("run"), TINY)
    return run, config


def test_dm_writes_a_synthetic_set_with_its_sha256(tiny_run):
    run, config = tiny_run
    blob = torch.load(run.dir.synthetic, weights_only=True)
    synthetic = load_synthetic(run.dir.synthetic)
    assert synthetic.images.shape == (8, 1, 28, 28) and synthetic.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert blob["sha256"] == synthetic.sha256 and blob["method"] == "dm"
    assert blob["normalization"]["mean"]


def test_teacher_checkpoints_and_manifest(tiny_run):
    run, config = tiny_run
    teacher_dir = run.dir.teacher_dir(config.teacher.id)
    manifest = json.loads((teacher_dir / "manifest.json").read_text())
    assert [c["epoch"] for c in manifest["checkpoints"]] == [0, 2] and manifest["complete"]
    assert [h["epoch"] for h in manifest["history"]] == [1, 2]
    for entry in manifest["checkpoints"]:
        state = torch.load(teacher_dir / entry["file"], weights_only=True)
        assert "classifier.weight" in state and 0 <= entry["test_acc"] <= 1
    assert (teacher_dir / "epoch_0002.pt").exists()


def test_extraction_matches_the_teacher_forward(tiny_run):
    from elfdd.models import create_model

    run, config = tiny_run
    store = FeatureStore(run.dir.store)
    assert store.epochs(config.teacher.id) == [0, 2]
    stored = store.features(config.teacher.id, 2, "block3")[...].astype(np.float32)
    teacher = create_model("convnet", 1, 4, 28)
    teacher.load_state_dict(
        torch.load(run.dir.teacher_dir(config.teacher.id) / "epoch_0002.pt", weights_only=True)
    )
    images = torch.from_numpy(store.synthetic()[0])
    with torch.no_grad():
        expected = teacher.eval().front(images).numpy()
    np.testing.assert_allclose(stored[:, 0], expected, rtol=2e-3, atol=2e-3)  # float16 storage
    logits = store.logits(config.teacher.id, 2)[...]
    assert logits.shape == (8, 1, 4)


@pytest.mark.parametrize("loss_mode", list(LOSS_TERMS))
def test_every_loss_mode_trains_and_reports(tiny_run, loss_mode):
    run, config = tiny_run
    path = stages.stage_cell(run, reference_job(config, "convnet", loss_mode, 0))
    record = json.loads(path.read_text())
    assert 0 <= record["test_acc"] <= 1 and record["loss"]["mode"] == loss_mode
    assert (record["teacher_epoch"] is None) == (loss_mode == "task")


@pytest.mark.parametrize("student", ["resnet18", "vgg11", "alexnet", "mlp"])
def test_elf_students_with_adapters(tiny_run, student):
    run, config = tiny_run
    record = json.loads(
        stages.stage_cell(run, reference_job(config, student, "front_rear_task", 0)).read_text()
    )
    assert record["mode"] == "elf" and record["layer"] == "block3"


@pytest.mark.parametrize("kind", list_feature_losses())
def test_feature_losses_are_zero_or_minimal_at_the_target(kind):
    teacher = torch.rand(4, 8, 2, 2)
    student = teacher.clone().requires_grad_(True)
    other = torch.rand(4, 8, 2, 2)
    assert feature_loss(kind, student, teacher) <= feature_loss(kind, other, teacher) + 1e-6
    feature_loss(kind, student, teacher).backward()


def test_cosine_is_per_sample_not_batch_global():
    teacher = torch.tensor([[1.0, 0.0], [0.0, 100.0]])
    student = torch.tensor([[1.0, 0.0], [100.0, 0.0]])
    # per sample: (0 + 1) / 2 = 0.5; a batch-global cosine would be about 0.99
    assert feature_loss("cosine", student, teacher).item() == pytest.approx(0.5)


def test_students_refuse_a_store_of_another_synthetic_set(tiny_run, tmp_path):
    run, config = tiny_run
    synthetic = load_synthetic(run.dir.synthetic)
    synthetic.images = synthetic.images + 1
    other_config = config.model_copy(deep=True)
    other_config.students.store = str(run.dir.store)
    other = stages.Run(tmp_path, other_config)
    synthetic.save(other.dir.synthetic)
    with pytest.raises(BadInput, match="built from synthetic set"):
        stages.open_student_dataset(other)


def test_report_from_student_runs(tiny_run):
    run, config = tiny_run
    for mode in ("task", "front_rear_task"):
        stages.stage_cell(run, reference_job(config, "mlp", mode, 0))
    config = config.model_copy(deep=True)
    config.students.archs = ["mlp"]
    stages.stage_report(stages.Run(run.dir, config))
    results = json.loads(run.dir.results.read_text())
    assert {r["mode"] for r in results["runs"]} == {"baseline", "elf"}
    assert {"student", "mode", "mean", "std", "n"} <= set(results["summary"][0])
    assert "| mlp |" in run.dir.report.read_text() and (run.dir.plots / "accuracy.png").stat().st_size > 1000


def test_a_seed_makes_a_student_run_repeatable(tiny_run):
    run, config = tiny_run
    job = reference_job(config, "convnet", "front_rear_task", 3)
    first = json.loads(stages.stage_cell(run, job).read_text())
    second = json.loads(stages.stage_cell(run, job, force=True).read_text())
    assert first["test_acc"] == second["test_acc"]


def test_students_refuse_features_of_another_checkpoint(tiny_run, tmp_path):
    import shutil

    import zarr

    run, config = tiny_run
    copy = tmp_path / "store.zarr"
    shutil.copytree(run.dir.store, copy)
    epoch = config.student_teacher_epoch
    zarr.open_group(str(copy), mode="r+")[f"teachers/{config.teacher.id}/epoch_{epoch:04d}"].attrs[
        "checkpoint_sha256"
    ] = "0" * 64
    other_config = config.model_copy(deep=True)
    other_config.students.store = str(copy)
    with pytest.raises(BadInput, match="another checkpoint"):
        stages.open_student_dataset(stages.Run(run.dir, other_config))
