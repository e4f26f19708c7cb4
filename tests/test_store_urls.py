"""Stores on fsspec URLs: written, read, verified and inspected on ``memory://`` and ``file://`` exactly as on a local
path; students train from a store on another URL; run directories take ``file://`` and refuse other URLs."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from helpers import TINY_RUN, clean_store, reference_job, staged_run

from elfdd.core.errors import BadInput
from elfdd.pipeline import stages
from elfdd.pipeline.synthetic import load_synthetic
from elfdd.store import location
from elfdd.store.inspect import feature_stats
from elfdd.store.reader import FeatureDataset
from elfdd.store.verify import verify_store


def _memory_url() -> str:
    return f"memory://elfdd-test/{uuid.uuid4().hex}/store.zarr"


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_store_on_url_reads_like_a_local_store(tmp_path, scheme):
    url = _memory_url() if scheme == "memory" else f"file://{tmp_path / 'url.zarr'}"
    clean_store(url, views=2)
    local, *_ = clean_store(tmp_path / "local.zarr", views=2)
    assert location.exists(url) and verify_store(url) == []
    on_url, on_disk = (FeatureDataset(p, "t1", 2, "block3") for p in (url, local))
    batch, expected = (
        on_url.get_batch([0, 5, 7], views=[1, 0, 1]),
        on_disk.get_batch([0, 5, 7], views=[1, 0, 1]),
    )
    for got, want in zip(batch, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    stats, reference = feature_stats(url), feature_stats(local)
    assert stats["arrays"] == reference["arrays"] and stats["store"] == location.normalize(url)


def test_damaged_store_on_memory_url_is_reported(tmp_path):
    import fsspec

    url = _memory_url()
    clean_store(url)
    fs, root = fsspec.url_to_fs(url)
    chunk = next(p for p in fs.find(root) if "/block3/c/" in p)
    data = bytearray(fs.cat_file(chunk))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(chunk, bytes(data))
    problems = verify_store(url)
    assert any("block3" in p and "checksum" in p.lower() for p in problems), problems


def test_students_train_from_a_store_on_another_url(toy_npz, tmp_path):
    from elfdd.flows.flows import report_flow

    run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[convnet]"])
    url = _memory_url()
    stages.extract_run_store(run, url)
    assert verify_store(url) == []
    job = reference_job(config, "convnet", "front_rear_task", 0)
    local = json.loads(stages.stage_cell(run, job).read_text())
    remote_config = config.model_copy(deep=True)
    remote_config.students.store = url
    other = stages.prepare_run(tmp_path / "other", remote_config)
    remote = json.loads(stages.stage_cell(other, job).read_text())
    assert remote["test_acc"] == local["test_acc"]  # the same features, read through fsspec
    for cell in stages.grid(remote_config):
        stages.stage_cell(other, cell)
    report_flow(f"file://{other.dir.root}")
    assert (
        json.loads(other.dir.results.read_text())["stores"][0]["synthetic_sha256"]
        == load_synthetic(run.dir.synthetic).sha256
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [("nosuchfs://bucket/store.zarr", "cannot open nosuchfs://"), (_memory_url(), "feature store not found")],
)
def test_unusable_store_url_is_bad_input(where, message):
    with pytest.raises(BadInput, match=message):
        FeatureDataset(where, "t1", 2, "block3")


def test_run_directory_must_be_local():
    assert str(location.local_dir("file:///tmp/a%20run")) == "/tmp/a run"
    with pytest.raises(BadInput, match="must be a local or mounted path"):
        location.local_dir("memory://runs/x")
