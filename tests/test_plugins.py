"""Plug-ins: a tiny package (tests/plugin_example) installed with pip registers an architecture, a dataset and a set
format through the ``elfdd.plugins`` entry point; the CLI, a whole flow run and Dask worker processes see them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_RUN

PLUGIN = Path(__file__).parent / "plugin_example"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """The example plug-in installed by pip into a folder of its own, put on PYTHONPATH only for the processes that
    should see it (the test venv itself is left as it is)."""
    target = tmp_path_factory.mktemp("plugin") / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
        ]
        + [str(PLUGIN)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(target.glob("elfdd_example_plugin-*.dist-info"))
    return target


def _env(plugin_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(plugin_path), "PYTHONWARNINGS": "ignore"}


def elfdd(plugin_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "elfdd.flows", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(plugin_path),
        cwd=cwd,
    )


def test_help_lists_the_plug_ins_entries(plugin_path):
    result = elfdd(plugin_path, "--help")
    assert result.returncode == 0, result.stderr
    for name in ("example_mlp", "example_stripes"):
        assert name in result.stdout
    without = subprocess.run(
        [sys.executable, "-m", "elfdd.flows", "--help"], capture_output=True, text=True, timeout=120
    )
    assert "example_mlp" not in without.stdout  # only the processes that have the package see it


def test_a_whole_run_on_the_plug_ins_dataset_and_architecture(plugin_path, tmp_path):
    """The CLI's run: every stage as a Prefect flow, on the plug-in's dataset, with its architecture as a student."""
    out = tmp_path / "run"
    sets = [*TINY_RUN, "data.name=example_stripes", "distill.ipc=2", "students.archs=[example_mlp,convnet]"]
    result = elfdd(plugin_path, "run", "--out", str(out), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {r["student"] for r in runs} == {"example_mlp", "convnet"}
    assert all(0 <= r["test_acc"] <= 1 for r in runs)


def test_an_imported_set_in_the_plug_ins_format(plugin_path, tmp_path):
    """``import-synthetic`` reads the plug-in's text format (found by its suffix, ``format: auto``)."""
    lines = [" ".join([str(c)] + ["0.5"] * (16 * 16)) for c in range(4) for _ in range(2)]
    (tmp_path / "set.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "imported"
    sets = [*TINY_RUN, "data.name=example_stripes"]
    result = elfdd(
        plugin_path, "import-synthetic", str(tmp_path / "set.txt"), "--out", str(out),
        *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from elfdd.pipeline.synthetic import load_synthetic

    synthetic = load_synthetic(out / "synthetic.pt")
    assert synthetic.extra["source"]["format"] == "example_txt"
    assert synthetic.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_dask_worker_processes_see_the_plug_in(plugin_path, monkeypatch):
    """Worker processes of a Dask cluster started with the plug-in installed resolve its names (as the students'
    task runner does: a worker builds the student by its registered name)."""
    from distributed import Client, LocalCluster

    from elfdd.core.plugins import load_plugins

    load_plugins()  # this process's registries stay without the plug-in (the suite's tests iterate over them)
    # The workers' environment has the package installed: Dask's spawned workers start from this process's sys.path.
    monkeypatch.syspath_prepend(str(plugin_path))
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        names = client.submit(_worker_models).result(timeout=120)
    assert "example_mlp" in names


def _worker_models() -> list[str]:
    from elfdd.models import create_model, list_models

    create_model("example_mlp", 1, 4, 16)
    return list_models()


def test_a_plug_in_that_fails_to_load_is_one_line(tmp_path):
    """An installed plug-in whose hook raises: every command says so in one line naming it (exit 2)."""
    broken = tmp_path / "site"
    (broken / "broken_plugin-0.1.dist-info").mkdir(parents=True)
    (broken / "broken_plugin-0.1.dist-info" / "METADATA").write_text("Name: broken-plugin\nVersion: 0.1\n")
    (broken / "broken_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[elfdd.plugins]\nbroken = broken_plugin:register\n"
    )
    (broken / "broken_plugin.py").write_text("def register():\n    raise RuntimeError('no GPU here')\n")
    result = elfdd(broken, "--help")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: plug-in broken (broken_plugin:register, group elfdd.plugins) failed to load: RuntimeError: no GPU here"
    ]
