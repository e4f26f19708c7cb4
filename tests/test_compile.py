"""students.compile: a cell's step compiled with torch.compile trains as the eager step does (aot_eager: the same
ATen ops, traced) and is keyed apart from it; an eager cell's key is the one it had before the option existed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import TINY_RUN, staged_run
from torch._dynamo.utils import counters

from elfdd.pipeline import stages
from elfdd.pipeline.students import CellInputs, train_cell
from elfdd.pipeline.students.cell import cell_training


@pytest.mark.parametrize("mode", ["task", "front_rear_task"])
def test_a_compiled_cell_trains_as_the_eager_one(mode, toy_npz, tmp_path):
    run, config = staged_run(
        toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[convnet]", f"students.loss_modes=[{mode}]"]
    )
    (cell,) = [c for c in stages.grid(config) if c.loss_mode == mode][:1]
    run = run.configured()
    inputs = CellInputs(run, [cell])
    ctx = inputs.context(run)
    eager = train_cell(cell, inputs.stage(cell).dataset, ctx)
    compiled_cfg = ctx.cfg.model_copy(update={"compile": "aot_eager"})
    torch._dynamo.reset()
    counters.clear()
    compiled = train_cell(cell, inputs.stage(cell).dataset, dataclasses.replace(ctx, cfg=compiled_cfg))
    assert counters["stats"]["unique_graphs"] >= 1  # the step did go through torch.compile
    assert compiled["test_acc"] == pytest.approx(eager["test_acc"], abs=0.02)
    for ours, theirs in zip(compiled["loss_curve"], eager["loss_curve"], strict=True):
        assert ours == pytest.approx(theirs, rel=1e-3)


def test_compile_is_part_of_a_cell_key_only_when_on(toy_npz):
    from elfdd.pipeline.config import load_config
    from elfdd.pipeline.students.pairing import student_plan

    config = load_config(None, ["data.name=npz", f"data.path={toy_npz}", "students.archs=[convnet]"])
    cell = stages.grid(config)[0]
    plan = student_plan(config, "convnet")
    assert "compile" not in cell_training(cell, config.students, plan)
    on = config.students.model_copy(update={"compile": "inductor"})
    assert cell_training(cell, on, plan)["compile"] == "inductor"


def test_a_mapping_compiles_only_its_architectures(toy_npz):
    from elfdd.core.errors import BadInput
    from elfdd.pipeline.config import load_config
    from elfdd.pipeline.students.pairing import student_plan

    archs = "students.archs=[convnet,mlp]"
    config = load_config(
        None, ["data.name=npz", f"data.path={toy_npz}", archs, "students.compile={convnet: inductor}"]
    )
    keys = {
        c.student: cell_training(c, config.students, student_plan(config, c.student))
        for c in stages.grid(config)
    }
    assert keys["convnet"]["compile"] == "inductor"
    assert "compile" not in keys["mlp"]  # the mlp cell keeps the eager key it always had
    with pytest.raises(BadInput, match="nosuch"):
        load_config(
            None, ["data.name=npz", f"data.path={toy_npz}", archs, "students.compile={nosuch: inductor}"]
        )
