"""Several teachers per run and store, the pairing rule, per-image views and the online view policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import reference_job, staged_run

from elfdd.core.errors import BadInput
from elfdd.flows.cli import main as cli_main
from elfdd.models import anatomy_of, list_models
from elfdd.pipeline import augment, stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.students import (
    Cell,
    StudentContext,
    check_store_fits,
    elf_losses,
    pair_student,
    train_cell,
)
from elfdd.pipeline.teachers import teacher_at
from elfdd.store.inspect import feature_stats
from elfdd.store.reader import FeatureStore
from elfdd.store.verify import verify_store

# The reference's pools on 28x28 grey images: a 128- and a 512-wide ConvNet, both 4x4 at block3.
POOL = {"convnet": (128, 4, 4), "convnet_w512": (512, 4, 4)}


def shapes(arch: str) -> tuple[dict, str]:
    anatomy = anatomy_of(arch, (1, 28, 28), 10)
    return anatomy.split_shapes, anatomy.default_split


@pytest.mark.parametrize(
    "arch,teacher,split,rule",
    [
        ("convnet", "convnet", "block3", "matched"),
        ("resnet18", "convnet_w512", "layer4_0", "matched"),
        ("vgg11", "convnet_w512", "stage4a", "matched"),
        ("tv_resnet18", "convnet", "layer2", "matched"),  # its default layer4_0 is 1x1
        ("alexnet", "convnet", "features3", "spatial"),  # 192x4x4: the nearer channel count
        ("tv_mobilenet_v3_small", "convnet", "stage1", "spatial"),
        ("lenet", "convnet", "conv2", "adapted"),  # 16x5x5: no 4x4 stage
        ("mlp", "convnet", "fc2", "adapted"),  # vectors only
    ],
)
def test_pairing_rule(arch, teacher, split, rule):
    pairing = pair_student(arch, *shapes(arch), POOL)
    assert (pairing.teacher, pairing.split, pairing.rule) == (teacher, split, rule)
    assert pairing.needs_adapter == (rule != "matched")


def test_explicit_teacher_wins_and_falls_back_to_adapters():
    pairing = pair_student("resnet18", *shapes("resnet18"), POOL, explicit="convnet")
    assert (pairing.teacher, pairing.split, pairing.rule) == ("convnet", "layer4_0", "spatial")
    with pytest.raises(BadInput, match="not a configured teacher"):
        pair_student("resnet18", *shapes("resnet18"), POOL, explicit="vit")


@pytest.mark.parametrize("arch", list_models())
def test_every_registered_student_pairs_with_a_split_it_has(arch):
    split_points, default = shapes(arch)
    pairing = pair_student(arch, split_points, default, POOL)
    assert pairing.split in split_points and pairing.teacher in POOL
    assert pairing.student_shape == split_points[pairing.split]
    matched = [s for s, shape in split_points.items() if shape in POOL.values()]
    assert (pairing.rule == "matched") == bool(matched)


TWO_TEACHERS = [
    "precision=fp32",
    "distill.ipc=2",
    "distill.iterations=2",
    "distill.batch_real=8",
    "teacher=null",
    "teachers=[{id: narrow, arch: convnet_w32, epochs: 2, checkpoint_epochs: [1, 2], batch_size: 32},"
    " {id: wide, arch: convnet_w64, epochs: 1, checkpoint_epochs: [1], batch_size: 32}]",
    "extract.teacher_epochs=null",
    "extract.views=3",
    "students.archs=[convnet_w32,convnet_w64,mlp]",
    "students.loss_modes=[task,front_rear_task]",
    "students.view_policies=[clean,online]",
    "students.epochs=2",
    "students.seeds=[0]",
]


@pytest.fixture(scope="module")
def two_teacher_run(toy_npz, tmp_path_factory):
    return staged_run(toy_npz, tmp_path_factory.mktemp("two_teachers"), TWO_TEACHERS)


def test_a_store_that_does_not_fit_the_run_is_refused_in_one_place(two_teacher_run, tmp_path):
    """students.check_store_fits: another teacher checkpoint than the run's, or another dataset, is bad input."""
    run, config = two_teacher_run
    dataset = stages.open_student_dataset(run, "wide", 1, "block3")
    other = stages.Run(
        tmp_path / "other", config
    )  # a run whose wide teacher was retrained: same store, other sha256
    manifest = json.loads((run.dir.teacher_dir("wide") / "manifest.json").read_text())
    manifest["checkpoints"] = [{**c, "sha256": "0" * 64} for c in manifest["checkpoints"]]
    other.dir.teacher_dir("wide").mkdir(parents=True)
    (other.dir.teacher_dir("wide") / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="epoch 1 come from another checkpoint than this run's"):
        check_store_fits(other, dataset, None)
    check_store_fits(stages.Run(tmp_path / "bare", config), dataset, None)  # no teachers of its own: fits
    other_data = config.model_copy(update={"data": config.data.model_copy(update={"name": "mnist"})})
    with pytest.raises(BadInput, match="holds features of dataset"):
        check_store_fits(stages.Run(run.dir, other_data), dataset, None)


def test_verify_compares_the_store_with_the_run_s_teacher_manifests(two_teacher_run):
    run, _ = two_teacher_run
    recorded = stages.recorded_checkpoints(run.dir.store)
    assert sorted(recorded) == ["narrow", "wide"] and sorted(recorded["narrow"]) == [1, 2]
    # the run's wide teacher is not the one the store was made from
    retrained = {**recorded, "wide": {1: "0" * 64}}
    assert verify_store(run.dir.store, retrained) == [
        "teachers/wide/epoch_0001: checkpoint_sha256 differs from the run's teacher manifest"
    ]
    assert stages.recorded_checkpoints("s3://bucket/store.zarr") == {}


def test_two_teacher_store_is_written_verified_and_inspected(two_teacher_run):
    run, config = two_teacher_run
    store = FeatureStore(run.dir.store)
    assert store.teachers() == ["narrow", "wide"]
    assert store.epochs("narrow") == [1, 2] and store.epochs("wide") == [1]
    assert store.features("narrow", 2, "block3").shape == (8, 3, 32, 4, 4)
    assert store.features("wide", 1, "block3").shape == (8, 3, 64, 4, 4)
    assert verify_store(run.dir.store, stages.recorded_checkpoints(run.dir.store)) == []
    stats = feature_stats(run.dir.store)
    assert {a["teacher"] for a in stats["arrays"]} == {"narrow", "wide"}
    for teacher in ("narrow", "wide"):  # each teacher's manifest: per-epoch test accuracy and the schedule
        manifest = json.loads((run.dir.teacher_dir(teacher) / "manifest.json").read_text())
        assert manifest["constant_phase_end"] >= 1 and all(
            "test_acc" in h and "lr" in h for h in manifest["history"]
        )


def test_students_read_their_paired_teacher(two_teacher_run):
    run, config = two_teacher_run
    jobs = stages.grid(config)
    teachers = {(j.student, j.view_policy): (j.teacher, j.teacher_epoch) for j in jobs if j.uses_features}
    assert teachers[("convnet_w32", "clean")] == ("narrow", 2)  # its last extracted epoch
    assert teachers[("convnet_w64", "clean")] == ("wide", 1)
    assert teachers[("mlp", "clean")] == ("narrow", 2)  # nothing matches: the first teacher, adapters
    for job in jobs:
        stages.stage_cell(run, job)
    stages.stage_report(run)
    results = json.loads(run.dir.results.read_text())
    by_cell = {r["cell"]: r for r in results["runs"]}
    wide = by_cell[reference_job(config, "convnet_w64", "front_rear_task", 0).name]
    assert wide["teacher_id"] == "wide" and wide["adapted"] is False and wide["rear_relu"] is True
    mlp = by_cell[reference_job(config, "mlp", "front_rear_task", 0).name]
    assert mlp["teacher_id"] == "narrow" and mlp["adapted"] is True
    assert {(s["teacher_id"], s["epoch"]) for s in results["stores"]} >= {("narrow", 2), ("wide", 1)}
    report = run.dir.report.read_text()
    assert "## Teacher pairing" in report and "`wide` (convnet_w64)" in report


def test_explicit_pairing_and_an_unknown_teacher(two_teacher_run, toy_npz):
    run, config = two_teacher_run
    explicit = load_config(run.dir.config, ["students.teacher={convnet_w64: narrow}"])
    job = reference_job(explicit, "convnet_w64", "front_rear_task", 0)
    assert (job.teacher, job.split) == ("narrow", "block3")  # 64x4x4 onto 32x4x4: 1x1 adapters
    with pytest.raises(BadInput, match="not configured"):
        load_config(run.dir.config, ["students.teacher={mlp: nobody}"])


def test_teacher_and_teachers_together_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("teacher: {id: a}\nteachers: [{id: b}]\n")
    assert cli_main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "either teacher" in err and "\n" not in err and not (tmp_path / "run").exists()


def test_duplicate_teacher_ids_are_refused():
    with pytest.raises(BadInput, match="unique"):
        load_config(None, ["teacher=null", "teachers=[{id: a}, {id: a}]"])


def test_online_policy_trains_on_the_teacher_forward_of_the_augmented_batch(two_teacher_run, monkeypatch):
    """Every step's teacher feature under view policy online is the checkpoint's forward on that step's images."""
    run, config = two_teacher_run
    job = reference_job(config, "convnet_w32", "front_rear_task", 0, view_policy="online")
    source = stages.teacher_source(run, job.teacher)
    data = stages.data_for(config)
    teacher, _ = teacher_at(
        source.config,
        source.folder,
        source.manifest,
        job.teacher_epoch,
        data.image_shape,
        4,
        torch.device("cpu"),
    )
    seen = []

    def spy(model, adapters, job, images, features, labels, *args, **kwargs):
        seen.append((images.detach().clone(), features.detach().clone()))
        return elf_losses(model, adapters, job, images, features, labels, *args, **kwargs)

    monkeypatch.setattr("elfdd.pipeline.students.train.elf_losses", spy)
    dataset = stages.open_student_dataset(run, job.teacher, job.teacher_epoch, job.layer)
    ctx = StudentContext(data.x_test, data.y_test, config.students, 4, torch.device("cpu"), "fp32")
    record = train_cell(job, dataset, ctx, teacher)
    assert record["view_policy"] == "online" and seen
    store_clean = torch.from_numpy(dataset.get_batch(range(len(dataset)))[1].numpy()).float()
    augmented = 0
    for images, features in seen:
        with torch.no_grad():
            np.testing.assert_allclose(features, teacher.front(images, "block3"), rtol=1e-5, atol=1e-5)
        augmented += not any(torch.allclose(f, features[0], atol=1e-3) for f in store_clean)
    assert augmented  # the batches were augmented, so their features are not the stored clean ones


def test_online_without_a_teacher_is_refused(two_teacher_run):
    run, config = two_teacher_run
    job = reference_job(config, "convnet_w32", "front_rear_task", 0, view_policy="online")
    dataset = stages.open_student_dataset(run, job.teacher, job.teacher_epoch, job.layer)
    data = stages.data_for(config)
    with pytest.raises(BadInput, match="online needs the teacher"):
        train_cell(
            job,
            dataset,
            StudentContext(data.x_test, data.y_test, config.students, 4, torch.device("cpu"), "fp32"),
        )


def test_per_image_view_ops_differ_within_a_view_and_replay_exactly(two_teacher_run):
    run, config = two_teacher_run
    store = FeatureStore(run.dir.store)
    params = torch.from_numpy(store.view_params("narrow")[...])
    assert store.view_params("narrow").attrs["ops"] == "per_image"
    ops = params[:, 1:, : len(augment.OPS)].argmax(-1)
    assert (params[:, 1:, : len(augment.OPS)].sum(-1) == 1).all()  # one op per image and view
    assert any(len(set(ops[:, v].tolist())) > 1 for v in range(ops.shape[1]))  # not one op for the whole view
    images = torch.from_numpy(store.synthetic()[0])
    for v in range(params.shape[1]):  # applying a row alone gives that image's view in the batch
        batch = augment.apply(images, params[:, v])
        for i in range(len(images)):
            torch.testing.assert_close(
                augment.apply(images[i : i + 1], params[i : i + 1, v]), batch[i : i + 1]
            )


def test_split_override_and_a_bad_split(two_teacher_run):
    run, config = two_teacher_run
    moved = load_config(run.dir.config, ["students.split={convnet_w32: block2}"])
    job = reference_job(moved, "convnet_w32", "front_rear_task", 0)
    assert job.split == "block2"
    bad = load_config(run.dir.config, ["students.split={convnet_w32: fc9}"])
    with pytest.raises(BadInput, match="no split point"):
        stages.grid(bad)


def test_a_student_job_without_a_teacher_reads_the_primary(two_teacher_run):
    run, config = two_teacher_run
    job = Cell("convnet_w32", "front_rear_task", 0, "clean", "ce", 1.0, 1.0, 2, "block3")
    assert stages.feature_cell(config, job) == ("narrow", 2, "block3")


def test_max_views_and_the_linear_rear_path(two_teacher_run):
    run, config = two_teacher_run
    changed = load_config(
        run.dir.config,
        ["students.view_policies=[replay]", "students.max_views=2", "students.rear_path=linear"],
    )
    job = reference_job(changed, "convnet_w32", "front_rear_task", 0)
    record = json.loads(stages.stage_cell(stages.Run(run.dir, changed), job).read_text())
    assert record["views"] == 2 and record["rear_relu"] is False
    default = reference_job(config, "convnet_w32", "front_rear_task", 0, view_policy="replay")
    assert json.loads(stages.stage_cell(run, default).read_text())["views"] == 3


def test_each_teacher_is_kept_or_retrained_on_its_own(two_teacher_run):
    run, config = two_teacher_run
    narrow = run.dir.teacher_dir("narrow") / "manifest.json"
    wide = run.dir.teacher_dir("wide") / "manifest.json"
    kept = narrow.stat().st_mtime_ns
    before = json.loads(wide.read_text())
    run.dir.stage_marker(
        "teacher-wide"
    ).unlink()  # as if the run had been killed while training the second teacher
    stages.stage_teacher(run)
    assert narrow.stat().st_mtime_ns == kept and run.dir.stage_marker("teacher-wide").exists()
    after = json.loads(wide.read_text())
    assert [c["sha256"] for c in after["checkpoints"]] == [c["sha256"] for c in before["checkpoints"]]
    assert stages.stage_extract(run) == run.dir.store and verify_store(run.dir.store) == []
