"""View-consistent features (view_policy replay): stored views, their exact replay in student training, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import clean_store, reference_job, staged_run

from elfdd.core.errors import BadInput
from elfdd.models import create_model, list_models
from elfdd.pipeline import augment, stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.students import Cell, StudentContext, train_cell
from elfdd.pipeline.students.train import student_view
from elfdd.store.reader import FeatureDataset, FeatureStore
from elfdd.store.stream import ChunkShuffleSampler, feature_loader
from elfdd.store.verify import verify_store

VIEWS = 5
TINY = [
    "precision=fp32",
    "distill.ipc=2",
    "distill.iterations=2",
    "distill.batch_real=8",
    "teacher.epochs=1",
    "teacher.checkpoint_epochs=[1]",
    "teacher.batch_size=32",
    f"extract.views={VIEWS}",
    "extract.dtype=float32",
    "students.epochs=2",
    "students.seeds=[0]",
    "students.view_policies=[clean,replay]",
]


@pytest.fixture(scope="module")
def replay_run(toy_npz, tmp_path_factory):
    run, config = staged_run(toy_npz, tmp_path_factory.mktemp("replay"), TINY)
    teacher = create_model("convnet", 1, 4, 28).eval()
    teacher.load_state_dict(
        torch.load(run.dir.teacher_dir(config.teacher.id) / "epoch_0001.pt", weights_only=True)
    )
    return run, config, teacher


def test_each_stored_view_is_the_teacher_on_that_augmentation(replay_run):
    run, config, teacher = replay_run
    store = FeatureStore(run.dir.store)
    images = torch.from_numpy(store.synthetic()[0])
    params = torch.from_numpy(store.view_params(config.teacher.id)[...])
    features = store.features(config.teacher.id, 1, "block3")
    assert features.shape[:2] == (8, VIEWS) and features.attrs["view_policy"] == "replay"
    assert params.shape == (8, VIEWS, augment.NUM_PARAMS) and not params[:, 0].any()  # view 0 is clean
    assert params[:, 1:, : len(augment.OPS)].any()  # the other views are augmented
    with torch.no_grad():
        for v in range(VIEWS):
            expected = teacher.front(augment.apply(images, params[:, v])).numpy()
            np.testing.assert_allclose(features[:, v], expected, rtol=1e-5, atol=1e-5)
        clean = teacher.front(images).numpy()
    np.testing.assert_allclose(features[:, 0], clean, rtol=1e-5, atol=1e-5)
    assert verify_store(run.dir.store) == []


def test_training_replays_exactly_the_extracted_augmentation(replay_run):
    """The images of a replay training batch, through the teacher, give back the feature that came with them."""
    run, config, teacher = replay_run
    dataset = FeatureDataset(run.dir.store, config.teacher.id, 1, "block3")
    sampler = ChunkShuffleSampler(len(dataset), dataset.chunk, 3, seed=1, views=VIEWS)
    seen_views = set()
    generator = torch.Generator().manual_seed(0)
    for keys, (images, feature, _, params) in zip(sampler, feature_loader(dataset, sampler), strict=True):
        seen_views |= {v for _, v in keys}
        trained_on = student_view(images, params, "replay", dsa=True, generator=generator)
        with torch.no_grad():
            np.testing.assert_allclose(
                teacher.front(trained_on).numpy(), feature.numpy(), rtol=1e-5, atol=1e-5
            )
    assert len(seen_views) > 1


def test_clean_policy_augments_afresh_against_the_clean_feature(replay_run):
    run, config, _ = replay_run
    dataset = FeatureDataset(run.dir.store, config.teacher.id, 1, "block3")
    images, feature, _, params = dataset.get_batch([0, 1, 2])
    assert not params.any()
    clean = dataset.get_batch([0, 1, 2], [0, 0, 0])[1]
    torch.testing.assert_close(feature, clean)
    fresh = student_view(images, params, "clean", dsa=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(fresh, images)


def test_replay_and_clean_students_side_by_side_in_the_report(replay_run):
    run, config, _ = replay_run
    config = config.model_copy(deep=True)
    config.students.archs = ["mlp"]
    run = stages.Run(run.dir, config)
    jobs = stages.grid(config)
    assert [j.view_policy for j in jobs] == [None, "clean", "replay"]
    for job in jobs:
        stages.stage_cell(run, job)
    stages.stage_report(run)
    results = json.loads(run.dir.results.read_text())
    replay = [r for r in results["runs"] if r["view_policy"] == "replay"]
    assert len(replay) == 1 and replay[0]["views"] == VIEWS and replay[0]["mode"] == "elf"
    assert {(s["mode"], s["view_policy"]) for s in results["summary"]} == {
        ("baseline", None),
        ("elf", "clean"),
        ("elf", "replay"),
    }
    header = run.dir.report.read_text().split("| student |")[1].splitlines()[0]
    assert "elf (clean)" in header and "elf (replay)" in header and "gain elf (replay)" in header


def test_replay_needs_stored_views(toy_npz, tmp_path):
    with pytest.raises(BadInput, match="extract.views"):
        load_config(None, ["data.name=npz", f"data.path={toy_npz}", "students.view_policies=[replay]"])


def test_replay_on_a_clean_store_is_refused(replay_run, tmp_path):
    """A user pointing a replay student at an external store of one view gets a clear error, not a crash."""
    path, *_ = clean_store(tmp_path / "clean.zarr")
    dataset = FeatureDataset(path, "t1", 1, "block3")
    run, config, _ = replay_run
    x_test, y_test = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    with pytest.raises(BadInput, match="1 view per image"):
        train_cell(
            Cell("mlp", "front_rear_task", 0, "replay"),
            dataset,
            StudentContext(x_test, y_test, config.students, 3, torch.device("cpu"), "fp32"),
        )


@pytest.mark.parametrize("stats", ["front", "all"])
def test_rear_bn_stats_front_keeps_the_rear_pass_out_of_the_running_statistics(stats):
    import copy

    from elfdd.models import adapter_pair, create_model
    from elfdd.pipeline.students import Cell, elf_losses

    torch.manual_seed(0)
    model = create_model("resnet18_bn", 1, 10, 28).train()
    split = model.default_split
    shape = model.feature_shape((1, 28, 28), split)
    adapters = adapter_pair(shape, shape)
    job = Cell("resnet18_bn", "rear_task", 0, "clean", None, None, 1.0, 0, "layer1", None, split)
    images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    teacher = torch.rand(8, *shape) * 5
    task_only = copy.deepcopy(model)
    settings = {"temperature": 1.0, "lambdas": (1.0, 1.0)}
    elf_losses(
        task_only,
        adapters,
        Cell("resnet18_bn", "task", 0),
        images,
        teacher,
        labels,
        **settings,
        rear_bn_stats="all",
    )
    elf_losses(model, adapters, job, images, teacher, labels, **settings, rear_bn_stats=stats)
    running = [k for k in model.state_dict() if "running" in k]
    same = all(torch.equal(model.state_dict()[k], task_only.state_dict()[k]) for k in running)
    assert same == (stats == "front")


@pytest.mark.parametrize("name", list_models())
def test_vector_front_scale_weights_only_fronts_without_a_spatial_stage(name, toy_npz):
    """The MLP's rule (students.vector_front_scale): a front that ends in a vector has its lambda_front scaled, a
    feature map keeps it."""
    from elfdd.pipeline.students import pairing_table

    config = load_config(None, ["data.name=npz", f"data.path={toy_npz}", f"students.archs=[{name}]"])
    job = reference_job(config, name, "front_rear_task", 0)
    plan = pairing_table(config)[name]
    shape = create_model(name, 1, 4, 28).feature_shape((1, 28, 28), job.split)
    assert plan.anatomy.front_shape(job.split) == tuple(shape)
    assert plan.front_scale(job.split, config.students) == (0.1 if len(shape) == 1 else 1.0)
    assert len(shape) == 1 or name != "mlp"
