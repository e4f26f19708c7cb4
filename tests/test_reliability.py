"""Faults and bad input (docs/reliability.md): the run-directory lock, numerical faults, names that could escape
the run directory, damaged checkpoints and stores, no pickle in the store, and any config value a user can type."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from helpers import TINY_RUN, reference_job, staged_run
from hypothesis import given, settings
from hypothesis import strategies as st

from elfdd.core.errors import BadInput, NumericalFault
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config, validate_config
from elfdd.pipeline.run.lock import run_lock
from elfdd.store.chunks import chunk_hashes

HOLD = "import sys, time; from pathlib import Path; from elfdd.pipeline.run.lock import run_lock\n" + (
    "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n"
)


@pytest.fixture()
def run_and_config(toy_npz, tmp_path):
    return staged_run(toy_npz, tmp_path / "run", TINY_RUN)


def _holder(root):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_writer_is_refused_while_the_first_holds_the_run(run_and_config, capsys):
    from elfdd.flows import cli

    run, _ = run_and_config
    before = run.dir.config.read_text()
    holder = _holder(run.dir.root)
    try:
        assert cli.main(["students", str(run.dir.root), "--set", "students.epochs=3"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by another elfdd process (pid {holder.pid})" in err[0]
        assert run.dir.config.read_text() == before and not run.dir.students.exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a dead holder leaves no stale lock
        holder.wait()
    with run_lock(run.dir.root), run_lock(run.dir.root):  # free again, and re-entrant in one process
        pass


def test_diverging_student_stops_naming_student_epoch_and_term(run_and_config):
    run, config = run_and_config
    config.students.lr = 1e12
    config.students.on_diverge = "fail"  # the default, record, is tests/test_divergence.py's
    job = reference_job(config, "convnet", "front_rear_task", 0)
    with pytest.raises(
        NumericalFault, match=r"student convnet__front_rear_task.*loss term \w+ is (nan|inf).* at epoch \d"
    ):
        stages.stage_cell(run, job)
    assert not run.dir.record_of(job.name).exists()


def test_nan_features_in_a_store_stop_the_student(run_and_config):
    run, config = run_and_config
    array = zarr.open_array(
        str(run.dir.store / "teachers" / config.teacher.id / "epoch_0002" / "block3"), mode="r+"
    )
    values = array[:]
    values[0] = np.nan
    array[:] = values  # a complete array holding NaN: written past the writer's own check ...
    array.attrs["chunk_sha256"] = chunk_hashes(array)  # ... and recorded as written
    job = reference_job(config, "convnet", "front_rear_task", 0)
    with pytest.raises(NumericalFault, match="teacher features .*block3 hold NaN or Inf in samples 0:"):
        stages.stage_cell(run, job)


def test_diverging_teacher_names_its_epoch(toy_npz, tmp_path):
    config = load_config(None, ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, "teacher.lr=1e12"])
    run = stages.prepare_run(tmp_path / "run", config)
    with pytest.raises(NumericalFault, match=r"teacher \w+ epoch \d+: cross-entropy loss is (nan|inf)"):
        stages.stage_teacher(run)
    assert not (run.dir.teacher_dir(config.teacher.id) / "manifest.json").exists() or not json.loads(
        (run.dir.teacher_dir(config.teacher.id) / "manifest.json").read_text()
    ).get("complete")


@pytest.mark.parametrize(
    "override",
    [
        "teacher.id=../../etc",
        "teacher.id=/abs",
        "extract.layers=[../block3]",
        "students.layers=[a/b]",
        "teacher.id=A B",
    ],
)
def test_names_that_could_escape_the_run_directory_are_refused(override):
    with pytest.raises(BadInput, match=override.split("=")[0].split(".")[-1]):
        load_config(None, [override])


def test_truncated_checkpoint_and_missing_array_are_named(run_and_config):
    from elfdd.store.reader import FeatureDataset

    run, config = run_and_config
    checkpoint = run.dir.teacher_dir(config.teacher.id) / "epoch_0002.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(BadInput, match=f"checkpoint {checkpoint} does not match the sha256"):
        stages.stage_extract(run, force=True)
    import shutil

    shutil.rmtree(run.dir.store / "teachers" / config.teacher.id / "epoch_0000" / "block3")
    with pytest.raises(BadInput, match="no layer 'block3' at teacher .* epoch 0"):
        FeatureDataset(run.dir.store, config.teacher.id, 0, "block3")


def test_the_store_holds_no_pickle(run_and_config):
    run, _ = run_and_config
    documents = [json.loads(p.read_text()) for p in run.dir.store.rglob("zarr.json")]
    arrays = [d for d in documents if d["node_type"] == "array"]
    assert arrays and all(np.dtype(a["data_type"]).kind in "fiub" for a in arrays)
    codecs = json.dumps([a["codecs"] for a in arrays])
    assert "pickle" not in codecs.lower() and "object" not in codecs.lower()


# Any value of any type a user can put in a config: either a valid RunConfig or one BadInput line naming the field.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 12), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
FIELDS = [
    "seed",
    "threads",
    "precision",
    "distill.ipc",
    "distill.method",
    "distill.iterations",
    "distill.lr_img",
    "teacher.epochs",
    "teacher.checkpoint_epochs",
    "teacher.arch",
    "teacher.id",
    "extract.views",
    "extract.dtype",
    "extract.layers",
    "students.archs",
    "students.lambda_front",
    "students.teacher_epochs",
    "students.seeds",
    "students.view_policies",
    "data.train_subset",
]


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_any_value_is_accepted_or_refused_in_one_line_naming_its_field(field, value):
    section, _, key = field.rpartition(".")
    raw = {section: {key: value}} if section else {key: value}
    try:
        config = validate_config(raw)
    except BadInput as exc:
        message = str(exc)
        assert "\n" not in message and key in message, message
    else:
        assert config.model_dump()  # a valid config round-trips


def test_a_lock_file_left_by_a_dead_process_does_not_block(tmp_path):
    """A lock file whose writer died (its pid inside) does not block: flock died with the process."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("999999\n")
    started = time.monotonic()
    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").read_text().strip() != "999999"
    assert time.monotonic() - started < 1
