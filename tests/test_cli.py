"""The elfdd command line end to end: the parent Prefect flow on tiny Fashion-MNIST, stages alone, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dask.array as da
import pytest
import zarr
from helpers import ROOT

pytestmark = pytest.mark.slow  # every test runs the elfdd command in processes of its own

TINY = [
    "data.train_subset=600",
    "data.test_subset=200",
    "distill.iterations=3",
    "distill.batch_real=8",
    "teacher.epochs=1",
    "teacher.checkpoint_epochs=[0,1]",
    "extract.teacher_epochs=[0,1]",
    "students.epochs=2",
    "students.archs=[convnet,resnet18,vgg11,alexnet,mlp]",
]


def elfdd(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "elfdd.flows", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, fashion_mnist_available):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = elfdd("run", "--config", "smoke", "--out", str(out), *_sets(TINY))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_run_produces_every_file_of_the_run_directory(smoke_run):
    out, result = smoke_run
    for name in (
        "config.yaml",
        "synthetic.pt",
        "checkpoints/teacher/manifest.json",
        "checkpoints/teacher/epoch_0000.pt",
        "checkpoints/teacher/epoch_0001.pt",
        "store.zarr/zarr.json",
        "results.json",
        "report.md",
        "plots/accuracy.png",
    ):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert {r["student"] for r in results["runs"]} == {"convnet", "resnet18", "vgg11", "alexnet", "mlp"}
    assert {(r["mode"], r["view_policy"]) for r in results["runs"]} == {
        ("baseline", None),
        ("elf", "clean"),
        ("elf", "replay"),
    }
    assert all(0 <= r["test_acc"] <= 1 for r in results["runs"])
    assert "report:" in result.stdout and "distill dm" in result.stderr  # progress is shown


def test_plain_zarr_and_dask_read_the_store(smoke_run):
    out, _ = smoke_run
    root = zarr.open_group(str(out / "store.zarr"), mode="r")
    assert root.attrs["elfdd"]["schema"] == 1
    features = da.from_zarr(str(out / "store.zarr"), component="teachers/teacher/epoch_0001/block3")
    assert features.shape == (10, 4, 128, 4, 4) and float(features.astype("float32").sum().compute()) > 0
    params = da.from_zarr(str(out / "store.zarr"), component="teachers/teacher/views/params")
    assert params.shape == (10, 4, 17)


def test_students_alone_from_an_existing_store(smoke_run, tmp_path):
    out, _ = smoke_run
    result = elfdd(
        "students",
        "--config",
        "smoke",
        "--out",
        str(tmp_path / "s"),
        *_sets([*TINY, "students.archs=[mlp]", f"students.store={out / 'store.zarr'}"]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert {r["student"] for r in results["runs"]} == {"mlp"}


def test_verify_and_inspect(smoke_run):
    out, _ = smoke_run
    verify = elfdd("verify", str(out / "store.zarr"))
    assert verify.returncode == 0 and verify.stdout.startswith("ok")
    inspect = elfdd("inspect", str(out / "store.zarr"), "--json", "--plots", str(out / "inspect"))
    stats = json.loads(inspect.stdout)
    assert {(s["epoch"], s["layer"]) for s in stats["arrays"]} == {(0, "block3"), (1, "block3")}
    assert stats["cka"][0]["epochs"] == [0, 1] and "plot:" in inspect.stderr
    assert (out / "inspect" / "cka_teacher_block3.png").exists()


def test_verify_fails_with_exit_2_on_damage(smoke_run, tmp_path):
    import shutil

    out, _ = smoke_run
    copy = tmp_path / "store.zarr"
    shutil.copytree(out / "store.zarr", copy)
    chunk = next(
        p
        for p in (copy / "teachers/teacher/epoch_0001/block3").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )
    chunk.write_bytes(chunk.read_bytes()[:-7])
    result = elfdd("verify", str(copy))
    assert result.returncode == 2 and "epoch_0001/block3" in result.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "--set", "distill.ipc=0"], "distill.ipc"),
        (["run", "--set", "students.archs=[nope]"], "students.archs"),
        (["run", "--config", "missing.yaml"], "not found"),
        (["run", "--set", "data.name=npz", "--set", "data.path=/nonexistent.npz"], "not found"),
        (["report"], "no config.yaml"),
        (["students", "--set", "students.store=/nonexistent/store.zarr"], "feature store not found"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(tmp_path, args, needle):
    out = tmp_path / "bad"
    result = elfdd(*args, "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and needle in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_method_option_selects_the_distillation_method(tmp_path):
    from elfdd.flows import cli

    args = cli._parser().parse_args(["distill", "--method", "mtt", "--out", str(tmp_path / "r")])
    assert cli._config_for(args).distill.method == "mtt"
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["distill", "--method", "kip"])


def test_rerun_with_another_student_list_trains_only_the_students(smoke_run):
    """Last in this file: it changes the smoke run's student list."""
    out, _ = smoke_run
    markers = {p.name: p.read_text() for p in (out / "stages").glob("*.json")}
    assert {"distill.json", "extract.json"} < set(markers) and any(m.startswith("teacher-") for m in markers)
    synthetic = (out / "synthetic.pt").stat().st_mtime_ns
    result = elfdd("run", str(out), "--config", "smoke", *_sets([*TINY, "students.archs=[mlp,lenet]"]))
    assert result.returncode == 0, result.stderr[-3000:]
    assert {s: (out / "stages" / s).read_text() for s in markers} == markers
    assert (out / "synthetic.pt").stat().st_mtime_ns == synthetic
    assert "inputs unchanged" in result.stderr
    results = json.loads((out / "results.json").read_text())
    assert {r["student"] for r in results["runs"]} == {"mlp", "lenet"}
