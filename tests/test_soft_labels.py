"""Soft labels from the store: the teacher's cached logits of exactly the view a student sees (loss modes logit,
logit_task = kd, front_rear_logit_task = elf_kd)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY_RUN, reference_job, staged_run
from torch.nn import functional as F

from elfdd.pipeline import stages
from elfdd.pipeline.losses import logit_loss
from elfdd.store.reader import FeatureStore

SOFT = [
    *TINY_RUN,
    "extract.views=3",
    "students.view_policies=[replay]",
    "students.archs=[convnet]",
    "students.loss_modes=[task,logit_task,front_rear_logit_task]",
]


@pytest.fixture(scope="module")
def soft_run(toy_npz, tmp_path_factory):
    return staged_run(toy_npz, tmp_path_factory.mktemp("soft"), SOFT)


def test_the_logit_loss_is_hinton_s_kl_times_t_squared():
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    assert logit_loss(teacher, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    for t in (1.0, 4.0):
        p = F.softmax(teacher / t, 1)
        expected = (p * (p.log() - F.log_softmax(student / t, 1))).sum(1).mean() * t**2
        assert logit_loss(student, teacher, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_label_modes_are_grid_cells_named_kd_and_elf_kd(soft_run):
    run, config = soft_run
    cells = stages.grid(config)
    modes = {c.loss_mode: c for c in cells}
    assert set(modes) == {"task", "logit_task", "front_rear_logit_task"}
    assert modes["logit_task"].teacher_epoch is not None and modes["logit_task"].lambda_front is None
    for cell in cells:
        stages.stage_cell(run, cell)
    records = {json.loads(run.dir.record_of(c.name).read_text())["mode"] for c in cells}
    assert records == {"baseline", "kd", "elf_kd"}
    results = json.loads(stages.stage_report(run).with_name("results.json").read_text())
    assert {s["mode"] for s in results["summary"]} == {"baseline", "kd", "elf_kd"}


def test_a_soft_label_cell_learns_from_the_logits_of_exactly_the_view_it_sees(soft_run, monkeypatch):
    run, config = soft_run
    from elfdd.pipeline.students import train

    seen = []
    real = train.elf_losses

    def spy(model, adapters, cell, images, teacher, labels, **kwargs):
        seen.append((teacher.detach().clone(), kwargs["soft_labels"][0].detach().clone()))
        return real(model, adapters, cell, images, teacher, labels, **kwargs)

    monkeypatch.setattr(train, "elf_losses", spy)
    cell = reference_job(config, "convnet", "logit_task", 0)
    stages.stage_cell(run, cell, force=True)
    store = FeatureStore(run.dir.store)
    features = store.features(cell.teacher, cell.teacher_epoch, cell.layer)[:].astype(np.float32)
    logits = store.logits(cell.teacher, cell.teacher_epoch)[:]
    flat = features.reshape(features.shape[0] * features.shape[1], -1)
    views = set()
    for teacher, teacher_logits in seen:
        for row, row_logits in zip(teacher.flatten(1).numpy(), teacher_logits.numpy(), strict=True):
            match = np.flatnonzero((flat == row).all(1))
            assert len(match) == 1  # the feature names its (sample, view)
            sample, view = divmod(int(match[0]), features.shape[1])
            np.testing.assert_array_equal(row_logits, logits[sample, view])
            views.add(view)
    assert len(views) > 1  # replayed views, not only the clean image


def test_the_soft_label_settings_are_in_the_cells_key_and_only_there(soft_run):
    run, config = soft_run
    changed = config.model_copy(deep=True)
    changed.students.lambda_logit = 0.5
    before = {c.name: stages.cell_key(c, *_key_inputs(run, c)) for c in stages.grid(config)}
    after_run = stages.Run(run.dir, changed)
    after = {c.name: stages.cell_key(c, *_key_inputs(after_run, c)) for c in stages.grid(changed)}
    moved = {name for name in before if before[name] != after[name]}
    assert moved == {name for name in before if "logit" in name}


def _key_inputs(run, cell):
    from elfdd.pipeline.students import CellInputs

    stage = CellInputs(run.configured(), [cell]).stage(cell)
    return stage.students, stage.plan, stage.dataset, run.configured()


def test_soft_label_cells_trained_as_one_batched_model_equal_cells_trained_alone(toy_npz, tmp_path):
    from elfdd.pipeline.students import CellInputs, train_cell, train_group

    sets = [
        *SOFT,
        "students.archs=[mlp]",
        "students.loss_modes=[front_rear_logit_task]",
        "students.seeds=[0,1]",
    ]
    run, config = staged_run(toy_npz, tmp_path / "run", sets)
    run = run.configured()
    cells = stages.grid(config)
    inputs = CellInputs(run, cells)
    readers = [inputs.stage(cell).dataset for cell in cells]
    ctx = inputs.context(run)
    alone = [train_cell(cell, reader, ctx) for cell, reader in zip(cells, readers, strict=True)]
    together = train_group(cells, readers, ctx)
    for a, b in zip(alone, together, strict=True):
        assert b["group_size"] == 2 and a["loss_curve"][-1].keys() >= {"logit", "front", "rear", "task"}
        for x, y in zip(a["loss_curve"], b["loss_curve"], strict=True):
            assert all(y[t] == pytest.approx(x[t], rel=1e-4, abs=1e-5) for t in x)


def test_the_logit_loss_at_t1_is_a_hand_computed_kl():
    """teacher logits (ln 3, 0) -> p = (3/4, 1/4); student (0, 0) -> q = (1/2, 1/2);
    KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812..."""
    teacher = torch.tensor([[np.log(3.0), 0.0]])
    student = torch.zeros(1, 2)
    assert logit_loss(student, teacher, 1.0).item() == pytest.approx(0.75 * np.log(1.5) + 0.25 * np.log(0.5))


def test_online_soft_labels_are_the_teacher_s_forward_of_the_augmented_batch(soft_run, monkeypatch):
    """Under view policy online a kd cell's teacher logits are the checkpoint's own logits of each step's images."""
    from elfdd.pipeline.students import train
    from elfdd.pipeline.students.cell import online_teacher
    from elfdd.pipeline.students.grid import make_cell

    run, config = soft_run
    reference = reference_job(config, "convnet", "logit_task", 0)
    cell = make_cell(
        "convnet",
        "logit_task",
        0,
        "online",
        "ce",
        1.0,
        1.0,
        reference.teacher_epoch,
        reference.layer,
        reference.teacher,
        reference.split,
    )
    teacher = online_teacher(run.configured(), cell)
    seen = []
    real = train.elf_losses

    def spy(model, adapters, cell, images, features, labels, **kwargs):
        seen.append((images.detach().clone(), kwargs["soft_labels"][0].detach().clone()))
        return real(model, adapters, cell, images, features, labels, **kwargs)

    monkeypatch.setattr(train, "elf_losses", spy)
    stages.stage_cell(run, cell, force=True)
    assert seen
    with torch.no_grad():
        for images, logits in seen:
            np.testing.assert_allclose(logits, teacher(images.float()), rtol=1e-5, atol=1e-5)


def test_swapping_two_views_logits_changes_the_soft_label_loss(soft_run):
    """The term reads the logits of the view it is given: the same images with another view's logits score
    differently, and with their own view's logits as before."""
    from elfdd.models import create_model
    from elfdd.pipeline.students import elf_losses

    run, config = soft_run
    cell = reference_job(config, "convnet", "logit_task", 0)
    dataset = stages.open_student_dataset(run, cell.teacher, cell.teacher_epoch, cell.layer, with_logits=True)
    images, features, labels, _, own = dataset.get_batch([0, 1, 2], [1, 1, 1])
    other = dataset.get_batch([0, 1, 2], [2, 2, 2])[4]
    assert not torch.equal(own, other)
    torch.manual_seed(0)
    model = create_model("convnet", 1, 4, 28).eval()

    def loss(logits):
        settings = {"temperature": 1.0, "lambdas": (None, None), "rear_bn_stats": "front"}
        terms = elf_losses(
            model, None, cell, images, features, labels, **settings, soft_labels=(logits, 4.0, 1.0)
        )
        return terms["logit"].item()

    assert loss(own) == loss(own.clone()) and loss(own) != pytest.approx(loss(other), rel=1e-3)


def test_a_soft_label_grid_on_a_store_without_logits_is_refused_before_any_cell(soft_run, tmp_path):
    """A store whose teacher logits are missing (an older or damaged store, given to the students stage alone, as
    `elfdd students DIR` does) stops the soft-label grid with one BadInput naming the array, before any cell
    trains. (`elfdd run` makes the extract stage again instead.)"""
    import shutil

    from elfdd.core.errors import BadInput
    from elfdd.pipeline.students import CellInputs

    run, config = soft_run
    copy = tmp_path / "run"
    shutil.copytree(run.dir.root, copy)
    for logits in (copy / "store.zarr").glob("teachers/*/epoch_*/logits"):
        shutil.rmtree(logits)
    cells = [c for c in stages.grid(config) if c.uses_logits]
    with pytest.raises(BadInput, match="logits"):
        CellInputs(stages.prepare_run(copy, config).configured(), cells)
