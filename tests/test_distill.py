"""Distillation methods on tiny data: each lowers its own objective and writes a valid set; MTT experts; MetaDD."""

from __future__ import annotations

import pytest
import torch

from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import load_data
from elfdd.pipeline.distill import distill
from elfdd.pipeline.distill.base import class_indices, initial_images, random_net
from elfdd.pipeline.distill.dm import dm_loss, frozen_random_net
from elfdd.pipeline.distill.gm import gm_loss, gradient_distance, loops_for
from elfdd.pipeline.distill.metadd import MetaDD, grad_cam, train_auxiliaries
from elfdd.pipeline.distill.mtt import trajectory_loss
from elfdd.pipeline.synthetic import load_synthetic
from elfdd.pipeline.teachers import load_trajectories, record_experts
from elfdd.pipeline.training import seed_everything

CPU = torch.device("cpu")


def _setup(toy_npz, *overrides):
    config = load_config(
        None, ["data.name=npz", f"data.path={toy_npz}", "distill.ipc=2", "distill.batch_real=16", *overrides]
    )
    return config, load_data(config.data)


def _fixed(objective, images):
    """The objective of ``images`` under one fixed network and one fixed draw of real batches and DSA."""
    torch.manual_seed(1234)
    return float(objective(images, torch.Generator().manual_seed(99)).detach())


def _check_set(synthetic, config, data, tmp_path):
    assert synthetic.images.shape == (data.num_classes * config.distill.ipc, *data.image_shape)
    assert torch.isfinite(synthetic.images).all() and synthetic.method == config.distill.method
    path = tmp_path / "synthetic.pt"
    digest = synthetic.save(path)
    assert load_synthetic(path).sha256 == digest


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dm", "dsa"])
def test_dm_and_dsa_lower_their_objective_and_write_a_valid_set(toy_npz, tmp_path, method):
    config, data = _setup(
        toy_npz,
        f"distill.method={method}",
        "distill.iterations=8",
        "distill.init=noise",
        "distill.outer_loop=2",
        "distill.inner_loop=3",
    )
    cfg = config.distill
    index = class_indices(data)
    labels = initial_images(data, cfg.ipc, cfg.init, seed_everything(0))[1]

    def objective(images, generator):
        if method == "dm":
            return dm_loss(
                data, cfg, images, frozen_random_net(cfg, data, CPU), index, generator, CPU, "fp32"
            )[0]
        net = random_net(cfg, data, CPU)
        return gm_loss(data, cfg, images, labels, net, index, generator, CPU, "fp32")[0]

    init = initial_images(data, cfg.ipc, cfg.init, seed_everything(0))[0]  # distill starts from this draw
    synthetic, update = distill(data, cfg, CPU, "fp32", seed=0)
    assert len(update.history) == cfg.iterations * (loops_for(cfg)[0] if method == "dsa" else 1)
    assert not torch.allclose(synthetic.images, init)
    assert _fixed(objective, synthetic.images) < _fixed(objective, init)
    _check_set(synthetic, config, data, tmp_path)


def test_gradient_distance_ours_skips_biases_and_is_zero_for_equal_gradients():
    g = [torch.randn(4, 3, 3, 3), torch.randn(4)]
    assert float(gradient_distance(g, g, "ours")) == pytest.approx(0, abs=1e-5)
    other = [g[0], torch.randn(4)]  # only the bias differs: "ours" ignores it, "mse" does not
    assert float(gradient_distance(other, g, "ours")) == pytest.approx(0, abs=1e-5)
    assert float(gradient_distance(other, g, "mse")) > 0


def test_mtt_records_experts_once_learns_an_lr_and_lowers_its_objective(toy_npz, tmp_path):
    config, data = _setup(
        toy_npz,
        "distill.method=mtt",
        "distill.iterations=6",
        "distill.lr_img=10",
        "distill.init=noise",
        "distill.mtt.experts=2",
        "distill.mtt.expert_epochs=3",
        "distill.mtt.expert_batch=16",
        "distill.mtt.syn_steps=4",
        "distill.mtt.expert_steps=1",
        "distill.mtt.max_start_epoch=1",
        "distill.mtt.lr_lr=1e-3",
    )
    cfg, experts = config.distill, tmp_path / "experts"
    manifest = record_experts(data, cfg, experts, CPU, "fp32", seed=0)
    trajectories = load_trajectories(experts, manifest)
    model = random_net(cfg, data, CPU)
    assert len(trajectories) == 2 and trajectories[0].shape == (4, sum(p.numel() for p in model.parameters()))
    # plain SGD experts: each epoch moved the parameters
    assert all((t[1:] - t[:-1]).norm(dim=1).min() > 0 for t in trajectories)
    mtime = (experts / "trajectory_000.pt").stat().st_mtime_ns

    labels = initial_images(data, cfg.ipc, cfg.init, seed_everything(0))[1]

    def objective(images, generator):
        start, target = trajectories[0][0], trajectories[0][1]
        lr = torch.tensor(cfg.mtt.syn_lr_init)
        return trajectory_loss(model, images, labels, start, target, lr, 4, 8, True, generator, CPU, "fp32")[
            0
        ]

    init = initial_images(data, cfg.ipc, cfg.init, seed_everything(0))[0]
    synthetic, _ = distill(data, cfg, CPU, "fp32", seed=0, experts_dir=experts)
    assert (experts / "trajectory_000.pt").stat().st_mtime_ns == mtime  # stored once, reused
    assert synthetic.extra["syn_lr"] != pytest.approx(cfg.mtt.syn_lr_init) and synthetic.extra["syn_lr"] > 0
    assert _fixed(objective, synthetic.images) < _fixed(objective, init)
    _check_set(synthetic, config, data, tmp_path)


def test_grad_cam_is_normalised_and_differentiable_in_the_pixels():
    from elfdd.models import create_model

    model = create_model("convnet", 1, 4, 28).eval()
    x = torch.randn(3, 1, 28, 28, requires_grad=True)
    cam = grad_cam(model, x, torch.tensor([0, 1, 2]))
    assert cam.shape == (3, 28, 28) and float(cam.min()) >= 0 and float(cam.amax()) <= 1 + 1e-6
    cam.sum().backward()
    assert x.grad.abs().sum() > 0


def test_metadd_lowers_its_own_loss_and_plugs_into_distillation(toy_npz, tmp_path):
    config, data = _setup(
        toy_npz,
        "distill.iterations=3",
        "distill.metadd.enabled=true",
        "distill.metadd.archs=[alexnet,vgg11]",
        "distill.metadd.aux_subset=40",
    )
    cfg = config.distill
    auxiliaries = train_auxiliaries(data, cfg.metadd, CPU, "fp32", seed=0)
    assert all(not p.requires_grad for aux in auxiliaries for p in aux.parameters())
    regulariser = MetaDD(auxiliaries, cfg.metadd)
    images, labels = initial_images(data, cfg.ipc, cfg.init, seed_everything(0))
    images = images.clone().requires_grad_(True)
    backbone = frozen_random_net(cfg, data, CPU)
    optimizer = torch.optim.SGD([images], lr=0.5)
    losses = []
    for _ in range(5):
        loss = regulariser(images, labels, backbone)
        losses.append(float(loss))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] and regulariser.last["cam_var"] >= 0
    synthetic, update = distill(data, cfg, CPU, "fp32", seed=0)
    assert synthetic.extra["metadd"]["archs"] == ["alexnet", "vgg11"] and len(update.history) == 3
    _check_set(synthetic, config, data, tmp_path)


@pytest.mark.parametrize(
    "killed_at", [2, 3, 4]
)  # inside the first auxiliary, at the boundary, inside the second
def test_metadd_auxiliaries_resume_after_a_kill_bitwise(toy_npz, tmp_path, monkeypatch, killed_at):
    """Killed in the middle of an auxiliary's epochs or between two auxiliaries, the training continues from its
    resume point and ends with the auxiliaries of an uninterrupted run, bitwise (AlexNet and VGG11 have dropout:
    the global random streams are restored too)."""
    from elfdd.pipeline.distill import metadd
    from elfdd.pipeline.resume import ResumePoint

    config, data = _setup(
        toy_npz,
        "distill.metadd.archs=[alexnet,vgg11]",
        "distill.metadd.aux_subset=40",
        "distill.metadd.aux_epochs=2",
    )
    cfg = config.distill.metadd
    whole = train_auxiliaries(data, cfg, CPU, "fp32", seed=0)
    resume = ResumePoint(tmp_path / "auxiliaries.pt", "key")
    calls, real_epoch = [0], metadd.train_epoch

    def dies(*args, **kwargs):
        calls[0] += 1
        if calls[0] == killed_at:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(metadd, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        train_auxiliaries(data, cfg, CPU, "fp32", seed=0, resume=resume)
    # a finished auxiliary is its own file of weights (a later session finds it in git); the one in training is not
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert ("distill_metadd_0_alexnet.pt" in kept) == (killed_at > 2)
    assert ("distill_metadd_training.pt" in kept) == (killed_at != 3)
    epochs_after = [0]

    def counted(*args, **kwargs):
        epochs_after[0] += 1
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(metadd, "train_epoch", counted)
    torch.manual_seed(777)  # the resumed process does not share the killed one's random streams
    resumed = train_auxiliaries(data, cfg, CPU, "fp32", seed=0, resume=resume)
    assert epochs_after[0] == 2 * 2 - (killed_at - 1)  # only the epochs the killed run had not finished
    for ours, theirs in zip(resumed, whole, strict=True):
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    metadd.clear_auxiliaries(resume, cfg)
    assert not list(tmp_path.iterdir())


def test_metadd_refuses_an_auxiliary_without_a_feature_map(toy_npz):
    from elfdd.core.errors import BadInput

    config, data = _setup(toy_npz, "distill.metadd.enabled=true", "distill.metadd.archs=[mlp]")
    with pytest.raises(BadInput, match="no spatial feature map"):
        train_auxiliaries(data, config.distill.metadd, CPU, "fp32", seed=0)


def test_method_specific_config_is_validated(toy_npz):
    from elfdd.core.errors import BadInput

    with pytest.raises(BadInput, match="expert_steps"):
        _setup(toy_npz, "distill.mtt.expert_steps=9", "distill.mtt.expert_epochs=3")
    with pytest.raises(BadInput, match="distill.method"):
        _setup(toy_npz, "distill.method=kip")
    config, _ = _setup(toy_npz, "distill.method=dsa")
    assert config.distill.image_lr == 0.1 and loops_for(config.distill) == (10, 50)  # IPC 2: the IPC-10 loops


def test_zca_whitens_with_train_statistics_applied_to_test():
    from elfdd.pipeline.zca import ZCA

    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(16, 16, generator=g)
    x = (torch.randn(4000, 16, generator=g) @ mixing).view(4000, 1, 4, 4)
    zca = ZCA.fit(x, eps=1e-6)
    white = zca(x).reshape(4000, -1)
    cov = (white - white.mean(0)).T @ (white - white.mean(0)) / 4000
    torch.testing.assert_close(cov, torch.eye(16), atol=2e-3, rtol=0)
    torch.testing.assert_close(zca.transform, zca.transform.T)


def test_zca_run_saves_its_statistics_and_stores_refuse_another_input_space(toy_npz, tmp_path):
    from helpers import staged_run

    from elfdd.core.errors import BadInput
    from elfdd.pipeline import stages

    overrides = [
        "precision=fp32",
        "data.zca=true",
        "distill.ipc=1",
        "distill.iterations=2",
        "distill.batch_real=8",
    ]
    overrides += [
        "teacher.epochs=1",
        "teacher.checkpoint_epochs=[1]",
        "students.epochs=1",
        "students.seeds=[0]",
    ]
    run, config = staged_run(toy_npz, tmp_path / "zca", overrides)
    state = torch.load(run.dir.zca, weights_only=True)
    data = stages.data_for(config)
    assert state["sha256"] == data.zca.sha256 == data.normalization()["zca_sha256"]
    from elfdd.store.reader import FeatureStore

    assert FeatureStore(run.dir.store).meta["normalization"]["zca_sha256"] == state["sha256"]
    plain = config.model_copy(deep=True)
    plain.data.zca = False
    with pytest.raises(BadInput, match="another input space"):
        stages.open_student_dataset(stages.Run(run.dir, plain))


def test_students_train_with_the_lr_mtt_learned_when_asked(toy_npz, tmp_path):
    from helpers import staged_run

    from elfdd.pipeline import stages
    from elfdd.pipeline.students import Cell

    overrides = ["precision=fp32", "distill.method=mtt", "distill.ipc=1", "distill.iterations=2"]
    overrides += ["distill.mtt.experts=1", "distill.mtt.expert_epochs=2", "distill.mtt.syn_steps=2"]
    overrides += [
        "distill.mtt.expert_steps=1",
        "distill.mtt.max_start_epoch=1",
        "distill.mtt.expert_batch=32",
    ]
    overrides += [
        "teacher.epochs=1",
        "teacher.checkpoint_epochs=[1]",
        "students.epochs=1",
        "students.seeds=[0]",
    ]
    run, config = staged_run(toy_npz, tmp_path / "mtt", [*overrides, "students.lr_from_synthetic=true"])
    syn_lr = load_synthetic(run.dir.synthetic).extra["syn_lr"]
    import json

    record = json.loads(stages.stage_cell(run, Cell("mlp", "task", 0)).read_text())
    assert (
        record["lr"] == pytest.approx(syn_lr)
        and (run.dir.root / "experts" / "convnet" / "manifest.json").exists()
    )


def test_the_random_subset_is_class_balanced_real_images_drawn_with_the_seed(toy_npz):
    """distill.method random: ``ipc`` training images of every class, exactly (nothing learned), chosen by the
    seed; another seed draws another subset, and a noise initialisation is refused."""
    from elfdd.core.errors import BadInput

    config = load_config(
        None, ["data.name=npz", f"data.path={toy_npz}", "distill.method=random", "distill.ipc=3"]
    )
    data = load_data(config.data)
    sets = [distill(data, config.distill, torch.device("cpu"), "fp32", seed)[0] for seed in (0, 0, 1)]
    first, again, other = sets
    assert torch.equal(first.images, again.images) and not torch.equal(first.images, other.images)
    assert first.labels.bincount().tolist() == [3] * data.num_classes
    for image, label in zip(first.images, first.labels, strict=True):
        matches = (data.x_train == image).flatten(1).all(1)
        assert matches.any() and bool((data.y_train[matches] == label).all())
    noise = config.distill.model_copy(update={"init": "noise"})
    with pytest.raises(BadInput, match="needs distill.init real"):
        distill(data, noise, torch.device("cpu"), "fp32", 0)
    too_many = config.distill.model_copy(update={"ipc": 10_000})
    with pytest.raises(BadInput, match="fewer than distill.ipc=10000"):
        distill(data, too_many, torch.device("cpu"), "fp32", 0)
