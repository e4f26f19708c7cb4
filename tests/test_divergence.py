"""ELF training that never breaks a run: diverged cells recorded (report, exit 3), device-clean steps (checked on the
``meta`` device, which refuses any hidden CPU tensor), no host sync per step, and the normalised feature loss."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_RUN, reference_job, staged_run
from torch.utils._python_dispatch import TorchDispatchMode

from elfdd.core.errors import StudentDiverged
from elfdd.models import adapter_pair, create_model, list_models
from elfdd.pipeline import augment, stages
from elfdd.pipeline.losses import feature_loss, list_feature_losses
from elfdd.pipeline.students import Cell, elf_losses
from elfdd.pipeline.students import train as students_module
from elfdd.pipeline.students.train import student_view
from elfdd.pipeline.training import NonFiniteWatch

DIVERGE_CONVNET = "students.arch_lr={convnet: 1.0e12}"


@pytest.fixture()
def run_and_config(toy_npz, tmp_path):
    return staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[convnet,mlp]"])


def test_a_diverged_cell_is_recorded_and_the_report_written_exit_3(run_and_config, capsys):
    from elfdd.flows import cli

    run, _ = run_and_config
    assert cli.main(["students", str(run.dir.root), "--set", DIVERGE_CONVNET]) == cli.EXIT_DIVERGED
    err = capsys.readouterr().err
    results = json.loads(run.dir.results.read_text())
    diverged = [r for r in results["runs"] if r["status"] == "diverged"]
    assert {r["student"] for r in diverged} == {"convnet"} and len(diverged) == 2  # baseline and ELF
    for record in diverged:
        assert record["test_acc"] is None and record["diverged"]["term"] in {"task", "front", "rear"}
        assert record["diverged"]["epoch"] >= 1
        assert f"diverged: {record['cell']}: loss term {record['diverged']['term']}" in err
        cell = json.loads((run.dir.students / f"{record['cell']}.json").read_text())
        assert cell["status"] == "diverged" and cell["diverged"] == record["diverged"]
    for path in run.dir.students.glob("mlp__*.json"):  # the other cells ran and are intact
        cell = json.loads(path.read_text())
        assert cell["status"] == "ok" and 0 <= cell["test_acc"] <= 1
    summary = {(s["student"], s["mode"]): s for s in results["summary"]}
    assert summary["convnet", "baseline"]["mean"] is None and summary["convnet", "baseline"]["diverged"] == 1
    report = run.dir.report.read_text()
    assert "**diverged** (1 of 1)" in report and "## Diverged runs (2 of 4)" in report
    assert (run.dir.plots / "accuracy.png").exists()
    # on_diverge fail: the kept diverged cell stops the stage (exit 2), as a numerical fault did before
    assert cli.main(["students", str(run.dir.root), "--set", "students.on_diverge=fail"]) == 2
    assert "loss term" in capsys.readouterr().err


def test_on_diverge_fail_raises_naming_cell_epoch_and_term(run_and_config):
    run, config = run_and_config
    config.students.arch_lr = {"convnet": 1e12}
    config.students.on_diverge = "fail"
    job = reference_job(config, "convnet", "front_rear_task", 0)
    with pytest.raises(
        StudentDiverged, match=r"student convnet__front_rear_task.*loss term \w+ is (nan|inf)"
    ):
        stages.stage_cell(run, job)
    assert not run.dir.record_of(job.name).exists()


@pytest.mark.parametrize("name", list_models())
def test_feature_shape_probes_on_the_models_device(name):
    model = create_model(name, 1, 10, 28)
    assert model.to("meta").feature_shape((1, 28, 28)) == create_model(name, 1, 10, 28).feature_shape(
        (1, 28, 28)
    )


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("policy", ["clean", "replay"])
def test_a_training_step_creates_no_tensor_off_the_device(name, policy):
    """Every tensor of the ELF step (student view, front/rear/task losses, adapters, the NaN watch) on ``meta``: a
    CPU tensor anywhere would make the op refuse the mix of devices."""
    meta = torch.device("meta")
    model = create_model(name, 1, 10, 28).to(meta)
    teacher_shape = (128, 4, 4)
    adapters = adapter_pair(model.feature_shape((1, 28, 28)), teacher_shape).to(meta)
    images, labels = torch.zeros(6, 1, 28, 28, device=meta), torch.zeros(6, dtype=torch.long, device=meta)
    params = torch.zeros(6, augment.NUM_PARAMS)
    params[:, augment.COL["scale"]] = 1.0
    images = student_view(images, params, policy, True, torch.Generator().manual_seed(0))
    for loss in list_feature_losses():
        job = Cell(name, "front_rear_task", 0, policy, loss, 1.0, 1.0, 2, "block3")
        teacher = torch.zeros(6, *teacher_shape, device=meta)
        losses = elf_losses(
            model,
            adapters,
            job,
            images,
            teacher,
            labels,
            temperature=1.0,
            lambdas=(1.0, 1.0),
            rear_bn_stats="front",
        )
        assert {t.device for t in losses.values()} == {meta}
        NonFiniteWatch(tuple(losses), meta).update(losses, 1)


class ScalarReads(TorchDispatchMode):
    """Counts reads of a tensor's value back to the host (.item(), bool(), float(), .tolist()): device syncs."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_training_reads_no_value_back_per_step(run_and_config, monkeypatch):
    """The host reads loss values only at the progress checks (10 per run), so 20 and 40 epochs (one step each)
    read the same number of values; a per-step finiteness check would add 3+ reads per step."""
    run, config = run_and_config
    monkeypatch.setattr(students_module, "evaluate", lambda *a, **k: 0.5)  # training only
    dataset = stages.open_student_dataset(run)
    data = stages.data_for(config)
    job = reference_job(config, "mlp", "front_rear_task", 0)
    reads = {}
    for epochs in (20, 40):
        cfg = config.students.model_copy(update={"epochs": epochs, "dsa": False})
        with ScalarReads() as counter:
            ctx = students_module.StudentContext(
                data.x_test, data.y_test, cfg, data.num_classes, torch.device("cpu"), "fp32"
            )
            record = students_module.train_cell(job, dataset, ctx)
        assert record["status"] == "ok"
        reads[epochs] = counter.count
    assert reads[20] == reads[40] < 40


def test_kl_feature_loss_is_a_bounded_distribution_match():
    torch.manual_seed(0)
    teacher = torch.relu(torch.randn(4, 128, 4, 4)) * 30  # raw activations with a large mass per position
    student = torch.randn(4, 128, 4, 4, requires_grad=True)
    assert feature_loss("kl", teacher, teacher).item() == pytest.approx(0.0, abs=1e-4)
    ce_grad = torch.autograd.grad(feature_loss("ce", student, teacher), student)[0]
    for temperature in (1.0, 4.0):
        loss = feature_loss("kl", student, teacher, temperature)
        assert loss.item() > 0
        grad = torch.autograd.grad(loss, student)[0]
        # d/ds of T^2 KL = T (softmax(s/T) - p_T) / (B*H*W): each entry at most T / (B*H*W)
        assert grad.abs().max() <= temperature / (4 * 4 * 4) + 1e-6
        assert grad.abs().max() < ce_grad.abs().max() / 10
