"""Faults a careless user or a broken machine causes (issue list in docs/reliability.md, "Faults tried"): every one
ends in one ``error:`` line and exit 2, touches nothing another process holds, and leaves a directory the same
command resumes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_RUN, reference_job, staged_run

from elfdd.core.errors import BadInput
from elfdd.pipeline import stages


def test_every_file_of_a_run_honours_the_umask(toy_npz, tmp_path):
    old = os.umask(0o022)
    try:
        run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[convnet]"])
        for job in stages.grid(config):
            stages.stage_cell(run, job)
        stages.stage_report(run)
    finally:
        os.umask(old)
    files = [p for p in run.dir.root.rglob("*") if p.is_file()]
    unreadable = [str(p.relative_to(run.dir.root)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o644]
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
    assert cli.main(["students", str(run.dir.root)]) == 0
    before = run.dir.config.read_bytes()
    capsys.readouterr()
    assert cli.main(["students", str(run.dir.root), "--set", "students.store=/typo.zarr"]) == 2
    assert "feature store not found" in capsys.readouterr().err
    assert run.dir.config.read_bytes() == before
    assert cli.main(["report", str(run.dir.root)]) == 0  # still works after the refusal


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


@pytest.fixture()
def finished_run(toy_npz, tmp_path):
    """A run through extraction (2 views, checkpoints at epochs 0 and 2): (RunDir, RunConfig)."""
    return staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "extract.views=2"])


def _verify_run(root, capsys) -> tuple[int, list[str]]:
    from elfdd.flows import cli

    code = cli.main(["verify", str(root)])
    return code, capsys.readouterr().out.strip().splitlines()


def test_verify_takes_a_run_directory_and_names_each_damaged_file(finished_run, capsys):
    run, config = finished_run
    stages.stage_cell(run, reference_job(config, "convnet", "task", 0))
    assert _verify_run(run.dir.root, capsys) == (0, [f"ok: {run.dir.root}"])
    checkpoint = run.dir.teacher_dir(config.teacher.id) / "epoch_0002.pt"
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    synthetic = torch.load(run.dir.synthetic, weights_only=True)
    synthetic["images"][0, 0, 0, 0] += 1  # edited, its recorded sha256 kept
    torch.save(synthetic, run.dir.synthetic)
    record = next(run.dir.students.glob("*.json"))
    record.write_text(record.read_text().replace('"seed"', '"sead"'))
    (run.dir.store / "teachers" / config.teacher.id / "epoch_0000" / "logits" / "zarr.json").unlink()
    code, lines = _verify_run(run.dir.root, capsys)
    assert code == 2
    damaged = "\n".join(lines)
    for name in ("epoch_0002.pt", "synthetic.pt", record.name, "epoch_0000/logits"):
        assert name in damaged, damaged


@pytest.mark.parametrize(
    "damage",
    ["array metadata deleted", "epoch group metadata deleted", "attributes edited", "chunk swapped"],
)
def test_store_damage_after_the_run_is_found_and_a_rerun_makes_the_store_again(finished_run, damage, capsys):
    import json

    import zarr

    from elfdd.store.verify import verify_store

    run, config = finished_run
    features = run.dir.store / "teachers" / config.teacher.id / "epoch_0002" / "block3"
    before = zarr.open_array(str(features), mode="r")[...]
    if damage == "array metadata deleted":
        (features / "zarr.json").unlink()
    elif damage == "epoch group metadata deleted":
        (features.parent / "zarr.json").unlink()
    elif damage == "attributes edited":
        meta = json.loads((run.dir.store / "zarr.json").read_text())
        meta["attributes"]["elfdd"]["num_classes"] = 7
        (run.dir.store / "zarr.json").write_text(json.dumps(meta))
    else:
        other = run.dir.store / "teachers" / config.teacher.id / "epoch_0000" / "block3"
        for mine, theirs in zip(
            sorted(p for p in (features / "c").rglob("*") if p.is_file()),
            sorted(p for p in (other / "c").rglob("*") if p.is_file()),
            strict=True,
        ):
            mine.write_bytes(theirs.read_bytes())
    assert verify_store(run.dir.store), damage
    assert _verify_run(run.dir.store, capsys)[0] == 2
    if (
        damage == "chunk swapped"
    ):  # chunk contents are the readers' to check: a student refuses to train on it
        with pytest.raises(BadInput, match="differs from the content recorded"):
            stages.stage_cell(run, reference_job(config, "convnet", "front_rear_task", 0))
        stages.stage_extract(run, force=True)
    else:  # the re-run finds the layout changed, makes the store again
        stages.stage_extract(run)
    assert verify_store(run.dir.store) == []
    assert (zarr.open_array(str(features), mode="r")[...] == before).all()


def test_a_checkpoint_changed_after_the_run_is_found_by_a_rerun(finished_run, caplog):
    from elfdd.core.io import sha256_file

    run, config = finished_run
    checkpoint = run.dir.teacher_dir(config.teacher.id) / "epoch_0002.pt"
    digest = sha256_file(checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])
    with caplog.at_level("WARNING", logger="elfdd"):
        stages.stage_teacher(run)
    assert "does not match the sha256 in its manifest" in caplog.text and "making it again" in caplog.text
    assert sha256_file(checkpoint) == digest  # retrained to the same bytes


@pytest.mark.parametrize("damage", ["missing chunk", "flipped byte"])
def test_inspect_names_a_damaged_store_in_one_line(finished_run, damage, capsys):
    from elfdd.flows import cli

    run, config = finished_run
    features = run.dir.store / "teachers" / config.teacher.id / "epoch_0002" / "block3"
    chunk = next(p for p in sorted((features / "c").rglob("*")) if p.is_file())
    if damage == "missing chunk":
        chunk.unlink()
    else:
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    for args in (["inspect", str(run.dir.store)], ["inspect", str(run.dir.store), "--json"]):
        assert cli.main(args) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert (
            len(err) == 1 and err[0].startswith(f"error: store {run.dir.store}") and "epoch_0002" in err[0]
        ), err
        assert "NaN" not in captured.out and "nan" not in captured.out


def _mount_tmpfs(folder, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode == 0
    )


def _leftovers(root) -> list[str]:
    """Temp files of an interrupted write (ours: .*.tmp; zarr's: *.partial)."""
    return [str(p) for p in root.rglob("*") if p.name.endswith((".tmp", ".partial"))]


@pytest.mark.slow
def test_a_disk_filling_up_mid_extraction_is_one_line_and_resumes_once_space_is_freed(toy_npz, tmp_path):
    import shutil

    import zarr

    config_sets = ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, "extract.views=4"]
    from elfdd.pipeline.config import load_config

    config = load_config(None, config_sets)
    whole = stages.prepare_run(tmp_path / "whole", config)
    stages.stage_distill(whole)
    stages.stage_teacher(whole)
    used = sum(p.stat().st_size for p in whole.dir.root.rglob("*") if p.is_file())
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, f"{(used + 200_000) // 1024}k"):
        pytest.skip("no permission to mount a small tmpfs here")
    try:
        run = stages.Run(disk / "run", config)
        shutil.copytree(whole.dir.root, run.dir.root)
        stages.stage_extract(whole)  # the same extraction with room for it
        code, _, stderr = _run_cli("extract", str(run.dir.root))  # the command as a user runs it
        err = stderr.strip().splitlines()
        assert code == 2, stderr[-2000:]
        assert len(err) == 1 and err[0].startswith(f"error: cannot write {run.dir.root}"), err
        assert "No space left on device" in err[0] and "MB free there; the stage writes up to" in err[0], err
        assert not _leftovers(run.dir.root) and not (run.dir.stage_marker("extract")).exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
        code, _, stderr = _run_cli("extract", str(run.dir.root))
        assert code == 0, stderr[-2000:]
        for path in sorted(p.relative_to(whole.dir.store) for p in whole.dir.store.rglob("zarr.json")):
            node = zarr.open(str(whole.dir.store / path.parent), mode="r")
            if isinstance(node, zarr.Array):
                assert (
                    zarr.open_array(str(run.dir.store / path.parent), mode="r")[...] == node[...]
                ).all(), path
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _bad_data(folder, case: str):
    """A data set (or imported set) broken in one way: the --set options (or args) that use it."""
    import struct

    import numpy as np
    from helpers import class_images, write_idx

    x, y = class_images(40, 28, 4, seed=0)
    xt, yt = class_images(20, 28, 4, seed=1)
    if case == "npz with zero images":
        np.savez(folder / "d.npz", x_train=x[:0], y_train=y[:0], x_test=xt, y_test=yt)
        return ["--set", "data.name=npz", "--set", f"data.path={folder / 'd.npz'}"]
    if case == "npz with one class":
        np.savez(folder / "d.npz", x_train=x, y_train=np.zeros_like(y), x_test=xt, y_test=np.zeros_like(yt))
        return ["--set", "data.name=npz", "--set", f"data.path={folder / 'd.npz'}"]
    if case == "idx label 57":
        y = y.copy()
        y[3] = 57
    if case == "idx with zero images":
        x, y = x[:0], y[:0]
    write_idx(folder / "train-images-idx3-ubyte", x)
    write_idx(folder / "train-labels-idx1-ubyte", y)
    write_idx(folder / "t10k-images-idx3-ubyte", xt)
    write_idx(folder / "t10k-labels-idx1-ubyte", yt)
    if case == "idx header overflow":  # 2**31 images of 2**31 x 4 pixels: 2**64, which wraps to 0 in int64
        header = struct.pack(">IIII", 0x0803, 2**31, 2**31, 4)
        import gzip

        with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(header)
    return ["--set", f"data.root={folder}"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case,needle",
    [
        ("idx label 57", "labels go up to 57, but classes"),
        ("idx with zero images", "holds no images"),
        ("idx header overflow", "expected 18446744073709551616 for shape"),
        ("npz with zero images", "holds no images"),
        ("npz with one class", "needs at least two classes"),
    ],
)
def test_bad_data_is_refused_in_one_line_before_anything_is_written(tmp_path, case, needle):
    out = tmp_path / "run"
    code, _, err = _run_cli("run", "--out", str(out), *_bad_data(tmp_path, case))
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def _run_cli(*args: str) -> tuple[int, str, str]:
    child = _cli(*args)
    return child.wait(timeout=300), *child.communicate()


@pytest.mark.slow
def test_bad_config_files_and_settings_are_one_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("seed: 0  # caf\xe9\n".encode("latin-1"))
    cases = {
        "not UTF-8": (["--config", str(tmp_path / "latin1.yaml")], "is not UTF-8 text"),
        "a directory": (["--config", str(tmp_path)], "is a directory"),
        "infinite lr": (["--set", "teacher.lr=.inf"], "config teacher.lr: Input should be a finite number"),
        "NaN lambda": (["--set", "students.lambda_rear=.nan"], "should be a finite number"),
    }
    for name, (args, needle) in cases.items():
        code, _, err = _run_cli("run", "--out", str(tmp_path / "run"), *args)
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and needle in err, (name, err)
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bad_imports_and_exports_are_one_line_and_leave_nothing(toy_npz, tmp_path):
    import numpy as np
    from PIL import Image

    data = ["--set", "data.name=npz", "--set", f"data.path={toy_npz}"]
    bomb = tmp_path / "bomb"
    for label in range(4):
        (bomb / str(label)).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(bomb / str(label) / "a.png")
    Image.new("L", (14_000, 14_000)).save(bomb / "0" / "b.png")  # 196 M pixels, 190 kB on disk
    code, _, err = _run_cli("import-synthetic", str(bomb), "--out", str(tmp_path / "a"), *data)
    assert code == 2 and err.count("\n") == 1 and "decompression bomb" in err, err
    one_class = tmp_path / "one.npz"
    np.savez(one_class, images=np.zeros((10, 28, 28), np.uint8), labels=np.zeros(10, np.int64))
    code, _, err = _run_cli(
        "import-synthetic", str(one_class), "--out", str(tmp_path / "b"), "--space", "pixel", *data
    )
    assert code == 2 and err.count("\n") == 1 and "has no image of classes [1, 2, 3]" in err, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    run, _ = staged_run(toy_npz, tmp_path / "run", TINY_RUN)
    (tmp_path / "afile").write_text("mine")
    code, _, err = _run_cli(
        "export-synthetic", str(run.dir.root), "--format", "png", "--out", str(tmp_path / "afile")
    )
    assert code == 2 and err.startswith("error: cannot write") and err.count("\n") == 1, err
    assert (tmp_path / "afile").read_text() == "mine"


def test_version(capsys):
    from elfdd import __version__
    from elfdd.flows import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"elfdd {__version__}"
