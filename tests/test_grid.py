"""The student grid: expansion over every axis, cached cells, torchvision students, the report's analyses."""

from __future__ import annotations

import base64
import json
import re

import pytest
from helpers import TINY_RUN, reference_job, staged_run

from elfdd.core.errors import BadInput
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config

GRID = [
    "students.archs=[mlp,lenet]",
    "students.loss_modes=[task,front_rear_task,front_task]",
    "students.lambda_front=[1,0.5]",
    "students.lambda_rear=[1,0.5]",
    "students.teacher_epochs=[2,0]",
    "students.epochs=1",
]


@pytest.fixture(scope="module")
def grid_run(toy_npz, tmp_path_factory):
    return staged_run(toy_npz, tmp_path_factory.mktemp("grid"), [*TINY_RUN, *GRID])


def test_the_grid_expands_every_axis_once(toy_npz):
    config = load_config(
        None,
        [
            "data.name=npz",
            f"data.path={toy_npz}",
            *GRID,
            "students.seeds=[0,1]",
            "students.feature_losses=[ce,l2]",
            "teacher.checkpoint_epochs=[0,2]",
            "teacher.epochs=2",
        ],
    )
    jobs = stages.grid(config)
    names = [j.name for j in jobs]
    assert len(names) == len(set(names)) == len(jobs)
    per_student_seed = {
        "task": 1,  # one baseline, whatever the feature axes
        "front_rear_task": 2 * 2 * 2 * 2,  # feature loss x lambda_front x lambda_rear x teacher epoch
        "front_task": 2 * 2 * 2,  # lambda_rear unused
    }
    for mode, count in per_student_seed.items():
        assert sum(j.loss_mode == mode for j in jobs) == count * 2 * 2  # x students x seeds
    assert all(j.lambda_rear is None for j in jobs if j.loss_mode == "front_task")
    assert all(j.teacher_epoch is None and j.layer is None for j in jobs if j.loss_mode == "task")
    assert reference_job(config, "mlp", "front_rear_task", 0) == next(
        j for j in jobs if j.student == "mlp" and j.loss_mode == "front_rear_task" and j.seed == 0
    )


def test_a_scalar_axis_is_a_one_value_grid(toy_npz):
    config = load_config(None, ["students.lambda_front=0.3", "students.feature_losses=l2"])
    assert config.students.lambda_front == [0.3] and config.students.feature_losses == ["l2"]
    with pytest.raises(BadInput, match="lambda_front"):
        load_config(None, ["students.lambda_front=[1,-1]"])
    with pytest.raises(BadInput, match="teacher_epoch"):
        load_config(None, ["students.teacher_epochs=[4,3]"])


def test_finished_cells_are_kept_and_changed_cells_retrained(grid_run):
    run, config = grid_run
    job = reference_job(config, "mlp", "front_rear_task", 0)
    path = stages.stage_cell(run, job)
    first = json.loads(path.read_text())
    stamp = path.stat().st_mtime_ns
    assert stages.stage_cell(run, job) == path and path.stat().st_mtime_ns == stamp  # kept
    longer = config.model_copy(deep=True)
    longer.students.epochs = 2
    again = json.loads(stages.stage_cell(stages.Run(run.dir, longer), job).read_text())
    assert again["cache_key"] != first["cache_key"] and again["epochs"] == 2  # retrained
    # the baseline does not depend on the feature axes: one cached run serves every lambda
    baseline = reference_job(config, "mlp", "task", 0)
    stages.stage_cell(run, baseline)
    other_lambda = config.model_copy(deep=True)
    other_lambda.students.lambda_front = [0.25]
    stamp = run.dir.record_of(baseline.name).stat().st_mtime_ns
    stages.stage_cell(stages.Run(run.dir, other_lambda), baseline)
    assert run.dir.record_of(baseline.name).stat().st_mtime_ns == stamp


def test_a_stale_run_is_not_reported(grid_run, tmp_path):
    run, config = grid_run
    for job in stages.grid(config):
        stages.stage_cell(run, job)
    changed = config.model_copy(deep=True)
    changed.students.lr = 0.02
    with pytest.raises(BadInput, match="another config or store"):
        stages.stage_report(stages.Run(run.dir, changed))


@pytest.mark.parametrize(
    "student,split,rear_relu",
    # split by shape: tv_resnet18's layer2 is 128x4x4 (the teacher's block3, no adapter); MobileNet's stage1 is
    # 24x4x4 (1x1 adapters) and ends in a linear bottleneck (no ReLU on the rear path).
    [("tv_resnet18", "layer2", True), ("tv_mobilenet_v3_small", "stage1", False)],
)
def test_torchvision_students_train_with_elf_split_by_shape(grid_run, student, split, rear_relu):
    run, config = grid_run
    job = reference_job(config, student, "front_rear_task", 0)
    record = json.loads(stages.stage_cell(run, job).read_text())
    assert record["mode"] == "elf" and 0 <= record["test_acc"] <= 1
    assert record["student_split"] == split and record["rear_relu"] is rear_relu


def test_report_has_every_analysis_and_publishes_artifacts(grid_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from elfdd.flows.flows import report_flow

    run, config = grid_run
    for job in stages.grid(config):
        stages.stage_cell(run, job)
    report_flow(str(run.dir.root))
    text = run.dir.report.read_text()
    for section in (
        "ELF Fig. 1",
        "λ_front x λ_rear",
        "Teacher checkpoint epoch",
        "Loss-mode ablation",
        "Provenance",
    ):
        assert section in text, section
    for plot in ("accuracy.png", "gains.png", "lambda_grid.png", "teacher_epoch.png"):
        assert (run.dir.plots / plot).stat().st_size > 1000, plot
    results = json.loads(run.dir.results.read_text())
    assert len(results["runs"]) == len(stages.grid(config)) and all(r["cache_key"] for r in results["runs"])
    assert results["reference"]["lambda_front"] == 1 and results["reference"]["teacher_epoch"] == {
        "teacher": 2
    }
    assert {s["epoch"] for s in results["stores"]} == {0, 2}
    from elfdd.flows.artifacts import artifact_key

    report, summary = artifact_key("report", run.dir.root), artifact_key("summary", run.dir.root)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[report, summary]))
        )
    kinds = {a.key: a.type for a in artifacts}
    assert kinds == {report: "markdown", summary: "table"}
    # The summary table: accuracy right after the student and mode (the UI's table cuts its last columns), then only
    # the axes that vary in this grid.
    table = json.loads(next(a.data for a in artifacts if a.key == summary))
    assert list(table[0])[:4] == ["student", "mode", "accuracy_pct", "std_pct"]
    assert "lambda_front" in table[0] and all(row["n"] == 1 for row in table)
    # The UI shows the artifact away from the run directory: every plot is in it, none is a relative link.
    published = next(a.data for a in artifacts if a.key == report and a.description == str(run.dir.report))
    assert "](plots/" not in published and "](plots/" in text
    inlined = re.findall(r"\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", published)
    pngs = {p.read_bytes() for p in run.dir.plots.glob("*.png") if f"plots/{p.name})" in text}
    assert len(inlined) == text.count("](plots/") and {base64.b64decode(b) for b in inlined} == pngs


def test_a_grid_builds_each_model_once_and_loads_no_data_for_a_shape(toy_npz, tmp_path, monkeypatch):
    """From ``students.archs`` to trained cells (a 3-architecture grid): the pairing table builds each architecture
    once (the students' and the teacher's), each cell builds its student once, and no dataset is loaded to learn a
    shape: planning the grid loads none, training it loads the data once (the test split the cells are scored on)."""
    from elfdd.models import anatomy, registry
    from elfdd.pipeline import data
    from elfdd.pipeline.run import run as run_module
    from elfdd.pipeline.students import pairing, train

    archs = ["mlp", "lenet", "convnet"]
    sets = [*TINY_RUN, f"students.archs=[{','.join(archs)}]", "students.loss_modes=[task,front_rear_task]"]
    run, config = staged_run(toy_npz, tmp_path / "run", sets)
    built: list[str] = []
    loads: list[str] = []
    real_create, real_load = registry.create_model, data.load_data

    def counted_create(name, *args, **kwargs):
        built.append(name)
        return real_create(name, *args, **kwargs)

    def counted_load(*args, **kwargs):
        loads.append("load")
        return real_load(*args, **kwargs)

    for module in (registry, train):
        monkeypatch.setattr(module, "create_model", counted_create)
    for module in (data, run_module):
        monkeypatch.setattr(module, "load_data", counted_load)
    monkeypatch.setattr("elfdd.pipeline.training.CPU_INFERENCE_BATCH", 64)  # no machine probe in the count
    anatomy.cache_clear()
    pairing._student_plan.cache_clear()
    run_module._cached_data.cache_clear()
    run_module._data_sha256.cache_clear()

    cells = stages.grid(config)
    groups = stages.cell_groups(config, cells)
    architectures = {a: config.students.arch_kwargs.get(a, {}) for a in archs}
    probes = len(
        {(a, str(k)) for a, k in architectures.items()}
        | {(t.arch, str(t.arch_kwargs)) for t in config.teacher_pool}
    )
    assert (len(built), loads) == (probes, []), built  # planning: one probe per architecture, no data
    for group in groups:
        stages.stage_cell_group(run, group)
    assert len(cells) == 2 * len(archs) and len(built) == probes + len(cells), built
    assert loads == ["load"]  # the test split, once for every cell


def test_a_cell_is_reached_through_four_modules(toy_npz, tmp_path):
    """From ``students.archs`` to a trained cell and its record: the student package's code that runs lives in four
    of its modules (grid, pairing, cell, train), besides the model registry's."""
    import sys

    run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[mlp]"])
    crossed: set[str] = set()

    def calls(frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.startswith("elfdd.pipeline.students."):
                crossed.add(module.rsplit(".", 1)[1])

    sys.setprofile(calls)
    try:
        cell = next(c for c in stages.grid(config) if c.uses_features)
        stages.stage_cell(run, cell)
    finally:
        sys.setprofile(None)
    assert crossed == {"grid", "pairing", "cell", "train"}, crossed
