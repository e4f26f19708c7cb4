"""Faults a careless user or a broken machine causes (issue list in docs/reliability.md, "Faults tried"): every one
ends in one ``error:`` line and exit 2, touches nothing another process holds, and leaves a directory the same
command resumes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from elfdd.pipeline import stages
from helpers import ROOT, TINY_RUN, staged_run


def test_every_file_of_a_run_honours_the_umask(toy_npz, tmp_path):
    old = os.umask(0o022)
    try:
        run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[convnet]"])
        for job in stages.grid(config):
            stages.stage_student(run, config, job)
        stages.stage_report(run, config)
    finally:
        os.umask(old)
    files = [p for p in run.root.rglob("*") if p.is_file()]
    unreadable = [str(p.relative_to(run.root)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o644]
    assert len(files) > 20 and not unreadable


def _cli(*args: str, cwd=ROOT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "elfdd.flows", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def _toy_sets(toy_npz, *extra: str) -> list[str]:
    return [f"--set={s}" for s in ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, *extra]]


@pytest.mark.slow
@pytest.mark.parametrize("runs", [2, 3])
def test_of_several_runs_started_together_on_a_new_directory_exactly_one_writes(toy_npz, tmp_path, runs):
    out = tmp_path / "run"
    children = [_cli("run", "--out", str(out), *_toy_sets(toy_npz)) for _ in range(runs)]
    finished = [(child.wait(timeout=600), *child.communicate()) for child in children]
    codes = sorted(code for code, _, _ in finished)
    assert codes == [0] + [2] * (runs - 1), [err[-2000:] for _, _, err in finished]
    for code, _, err in finished:
        if code == 2:
            assert err.count("\n") == 1 and "is in use by another elfdd process" in err, err
    assert (out / "results.json").exists() and (out / ".lock").exists() and (out / "config.yaml").exists()


def test_a_refused_command_leaves_config_yaml_byte_identical(toy_npz, tmp_path, capsys):
    from elfdd.flows import cli

    run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[mlp]"])
    assert cli.main(["students", str(run.root)]) == 0
    before = run.config.read_bytes()
    capsys.readouterr()
    assert cli.main(["students", str(run.root), "--set", "students.store=/typo.zarr"]) == 2
    assert "feature store not found" in capsys.readouterr().err
    assert run.config.read_bytes() == before
    assert cli.main(["report", str(run.root)]) == 0  # still works after the refusal


def test_run_on_an_existing_file_or_a_read_only_place_is_one_line(tmp_path, capsys):
    from elfdd.flows import cli

    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert cli.main(["distill", "--out", str(afile), "--set", "distill.iterations=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: run directory {afile} is a file, not a directory; pass another --out"]
    assert afile.read_text() == "mine"
    readonly = tmp_path / "ro"
    readonly.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)]).returncode:
        pytest.skip("no permission to mount a read-only file system here")
    try:
        assert cli.main(["distill", "--out", str(readonly / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            len(err) == 1 and err[0].startswith("error: cannot write ") and "Read-only file system" in err[0]
        )
    finally:
        subprocess.run(["umount", str(readonly)], check=True)


def _descendants(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def _outcome(out) -> tuple[str, list]:
    """The synthetic set's sha256 and every cell's accuracy: what a resumed run must reproduce."""
    import json

    import torch

    results = json.loads((out / "results.json").read_text())
    accuracies = sorted((r["cell"], r["test_acc"]) for r in results["runs"])
    return torch.load(out / "synthetic.pt", weights_only=True)["sha256"], accuracies


@pytest.fixture(scope="module")
def uninterrupted(toy_npz, tmp_path_factory):
    """A run that nothing stopped, and its --set options: what a stopped and resumed run must equal."""
    sets = _toy_sets(toy_npz, "distill.iterations=300", "distill.resume_every=5")
    out = tmp_path_factory.mktemp("whole") / "run"
    whole = _cli("run", "--out", str(out), *sets)
    assert whole.wait(timeout=600) == 0, whole.communicate()[1][-2000:]
    return out, sets


def _stop_under_way(out, sets, target: str) -> None:
    """Start ``elfdd run``, SIGTERM it (its process, or its process group as ``timeout`` does) while it distils,
    and check it stops at once, with one line, and leaves nothing of what it started running."""
    import signal
    import time

    import psutil

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen(
        [sys.executable, "-m", "elfdd.flows", "run", "--out", str(out), *sets],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a shell job under `timeout` is
    )
    for line in child.stderr:  # distillation is under way (resume points written)
        if "distill dm" in line and "/300" in line:
            break
    started = _descendants(child.pid)  # the command, the temporary Prefect server
    stopping = time.monotonic()
    if target == "process":
        child.send_signal(signal.SIGTERM)
    else:
        os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert time.monotonic() - stopping < 5
    assert child.stderr.read().strip().splitlines()[-1].startswith("error: stopped by SIGTERM; run the same")
    time.sleep(0.5)
    alive = [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert len(started) >= 2 and not alive


@pytest.mark.slow
def test_sigterm_stops_at_once_stops_what_it_started_and_resumes_identically(toy_npz, tmp_path):
    sets = _toy_sets(toy_npz, "distill.iterations=300", "distill.resume_every=5")
    whole = _cli("run", "--out", str(tmp_path / "whole"), *sets)
    assert whole.wait(timeout=600) == 0, whole.communicate()[1][-2000:]
    _stop_under_way(tmp_path / "run", sets, "process")
    _stop_under_way(tmp_path / "run", sets, "process group")
    again = _cli("run", "--out", str(tmp_path / "run"), *sets)
    code, _, err = again.wait(timeout=600), *again.communicate()
    assert code == 0 and "resuming from" in err, err[-2000:]
    assert _outcome(tmp_path / "run") == _outcome(tmp_path / "whole")
