"""Scale-out: the per-epoch extraction and the student grid as parallel tasks on a dask.distributed LocalCluster
(2 worker processes on loopback) give the same store and the same results.json as the in-process run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import TINY_RUN, staged_run

from elfdd.core.errors import BadInput
from elfdd.core.io import content_sha256
from elfdd.flows.flows import extract_flow, students_flow
from elfdd.pipeline import stages
from elfdd.store.reader import FeatureStore

pytestmark = pytest.mark.slow  # dask clusters in processes of their own

GRID = [*TINY_RUN, "threads=1", "students.archs=[convnet,mlp]", "students.seeds=[0,1]"]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    from elfdd.flows.runner import quiet_local_cluster

    # quiet_local_cluster restores the environment: the nannies set OMP_NUM_THREADS=1 etc. in this process, which
    # later tests' subprocesses would inherit
    with (
        quiet_local_cluster(),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
    ):
        yield local


def _features(path, config) -> dict:
    store = FeatureStore(path)
    return {
        (epoch, layer): content_sha256(store.features(config.teacher.id, epoch, layer)[:])
        for epoch in config.extract_epochs
        for layer in config.extract_layers
    }


def _results(run) -> dict:
    results = json.loads(run.dir.results.read_text())
    for record in results["runs"]:
        del record["train_seconds"]
    return results


def test_grid_on_dask_matches_in_process(toy_npz, tmp_path, cluster):
    here, config = staged_run(toy_npz, tmp_path / "here", GRID)
    there = tmp_path / "there"
    shutil.copytree(here.dir.root, there)
    try:
        students_flow(str(here.dir.root))
        extract_flow(str(there), force=True, dask_address=cluster.scheduler_address)
        students_flow(str(there), dask_address=cluster.scheduler_address)
    finally:
        torch.set_num_threads(2)  # threads=1 in the config set it for this test process
    assert _features(there / "store.zarr", config) == _features(here.dir.store, config)
    assert len(json.loads(here.dir.results.read_text())["runs"]) == 2 * 2 * 2
    assert _results(stages.open_run(there)) == _results(here)


def test_unreachable_scheduler_is_bad_input():
    from elfdd.flows.runner import dask_runner

    with pytest.raises(BadInput, match="no Dask scheduler answers at 'tcp://127.0.0.1:9'"):
        dask_runner("tcp://127.0.0.1:9", connect_timeout=2)


def test_local_pool_trains_the_grid_side_by_side(toy_npz, tmp_path, caplog):
    """``workers=2``: the student cells train on a local pool of 2 processes (one torch thread each here, as in
    the in-process run), with the in-process run's results; a re-run with every cell finished starts no pool."""
    here, config = staged_run(toy_npz, tmp_path / "here", GRID)
    there = tmp_path / "there"
    shutil.copytree(here.dir.root, there)
    try:
        students_flow(str(here.dir.root))
        caplog.clear()
        with caplog.at_level("INFO", logger="elfdd"):
            students_flow(str(there), config=config.model_copy(update={"workers": 2}))
        assert "training on 2 local worker processes, 1 torch threads each" in caplog.text
        pooled, in_process = _results(stages.open_run(there)), _results(here)
        assert pooled["config"].pop("workers") == 2 and in_process["config"].pop("workers") == 1
        assert pooled == in_process
        caplog.clear()
        with caplog.at_level("INFO", logger="elfdd"):
            students_flow(str(there))
        assert "local worker processes" not in caplog.text
        assert caplog.text.count("finished run with the same key, kept") == 2 * 2 * 2
    finally:
        torch.set_num_threads(2)


@pytest.mark.parametrize(
    ("cores", "memory_gb", "cells", "workers", "threads", "device", "expected"),
    [
        (2, 24, 30, 0, 0, "cpu", (2, 1)),  # this machine: one cell per core
        (16, 9, 30, 0, 0, "cpu", (4, 4)),  # memory allows 4 workers: the cores are shared among them
        (8, 24, 3, 0, 0, "cpu", (3, 2)),  # no more workers than cells
        (2, 24, 1, 0, 0, "cpu", (1, 2)),  # one cell: in this process with every core
        (8, 24, 30, 0, 0, "cuda", (1, 8)),  # one GPU: one cell at a time
        (2, 24, 2, 3, 0, "cpu", (2, 1)),  # asked for 3, 2 cells
        (2, 24, 30, 2, 2, "cpu", (2, 2)),  # threads asked for are kept
    ],
)
def test_local_pool_size(monkeypatch, cores, memory_gb, cells, workers, threads, device, expected):
    from elfdd.flows import runner

    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(runner, "available_memory", lambda: memory_gb << 30)
    pool = runner.LocalPool.for_cells(cells, workers, threads, device)
    assert (pool.workers, pool.threads) == expected


def test_dask_workers_are_told_the_prefect_api(cluster):
    """Workers started as the README says know no Prefect server; the runner tells them this process's."""
    import os

    from distributed import Client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from elfdd.flows.runner import dask_runner

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4299/api"}):
        dask_runner(cluster.scheduler_address)
    with Client(cluster.scheduler_address) as client:
        seen = client.run(lambda: os.environ.get("PREFECT_API_URL"))
        client.run(lambda: os.environ.pop("PREFECT_API_URL", None))  # the other tests' workers know no server
    assert set(seen.values()) == {"http://127.0.0.1:4299/api"} and len(seen) == 2
