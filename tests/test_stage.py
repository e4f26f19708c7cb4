"""The Stage protocol: build_stage keeps an output whose inputs' key is unchanged, builds it otherwise (or when
forced), and keys it; the run's stages and the flows' parameters are built on the same shapes."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from elfdd.flows import flows
from elfdd.pipeline import stages
from elfdd.pipeline.config import RunConfig


@dataclass
class Echo(stages.KeyedStage):
    """A stage whose output is its input written to a file; counts its builds."""

    value: str
    name: str = "echo"
    builds: list[str] = field(default_factory=list)

    def key(self, run: stages.Run) -> str:
        return stages.stage_key("echo", self.value)

    def output(self, run: stages.Run) -> Path:
        return run.dir.root / "echo.txt"

    def build(self, run: stages.Run, key: str) -> None:
        self.builds.append(key)
        self.output(run).write_text(self.value)


def test_build_stage_keeps_unchanged_inputs_and_rebuilds_changed_ones(tmp_path):
    run = stages.Run(tmp_path, RunConfig())
    first = Echo("a")
    assert stages.build_stage(first, run).read_text() == "a"
    assert stages.build_stage(first, run).read_text() == "a"
    assert len(first.builds) == 1  # the marker holds the same key: kept
    assert run.dir.stage_marker("echo").exists()

    changed = Echo("b")
    assert stages.build_stage(changed, run).read_text() == "b" and len(changed.builds) == 1

    stages.build_stage(changed, run, force=True)
    assert len(changed.builds) == 2

    run.dir.stage_marker("echo").unlink()  # output without its marker (killed between the two): rebuilt
    stages.build_stage(changed, run)
    assert len(changed.builds) == 3


def test_run_resolves_its_runtime_once(tmp_path, monkeypatch):
    calls = []
    from elfdd.pipeline.run import run as run_module

    real = run_module.runtime
    monkeypatch.setattr(run_module, "runtime", lambda config: calls.append(1) or real(config))
    run = stages.Run(tmp_path, RunConfig(device="cpu", precision="fp32"))
    assert (run.device.type, run.precision) == ("cpu", "fp32")
    run.runtime  # noqa: B018
    assert len(calls) == 1


@pytest.mark.parametrize("stage", [stages.Distill(), stages.Teacher("teacher"), stages.Extract()])
def test_pipeline_stages_follow_the_protocol(stage, tmp_path):
    assert isinstance(stage, stages.KeyedStage)
    run = stages.Run(tmp_path, RunConfig())
    assert stage.output(run).is_relative_to(tmp_path)
    assert {"key", "output", "build", "kept", "finish"} <= set(dir(stage))


@pytest.mark.parametrize("name", sorted(flows.FLOWS))
def test_every_flow_is_a_plain_typed_function_whose_form_describes_each_parameter(name):
    from prefect.utilities.callables import parameter_schema

    flow = flows.FLOWS[name]
    expected = ["run_dir", "config", "force"] + (["dask_address"] if name in flows.DASK_STAGES else [])
    assert list(inspect.signature(flow.fn).parameters) == expected
    schema = parameter_schema(flow).model_dump()["properties"]
    assert list(schema) == expected
    assert all(schema[n].get("description") for n in expected), schema
    assert schema["run_dir"]["default"] == "runs/default" and schema["force"]["default"] is False
