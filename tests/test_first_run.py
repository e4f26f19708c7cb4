"""The first run on a machine equals every later one: nothing measured or cached per machine (the CPU inference
batch, a model probe) may draw from the random streams a stage is seeded with."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_RUN, reference_job

from elfdd.core.io import sha256_file
from elfdd.models import anatomy as anatomy_module
from elfdd.models import anatomy_of, list_models
from elfdd.pipeline import inference, stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.students import pairing as pairing_module


def _forget_the_machine(monkeypatch, folder) -> None:
    """A fresh machine: no ``~/.cache/elfdd``, nothing measured or probed in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.delenv("ELFDD_INFERENCE_BATCH", raising=False)
    monkeypatch.setattr("elfdd.pipeline.training.CPU_INFERENCE_BATCH", None)
    inference._per_machine.cache_clear()
    anatomy_module.cache_clear()
    pairing_module._student_plan.cache_clear()


def _stages_and_one_cell(toy_npz, folder) -> tuple[str, list[str], dict]:
    """sha256 of the synthetic set and of every chunk of the store's features, and one ELF cell's record (less
    its timing)."""
    config = load_config(None, ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN])
    run = stages.prepare_run(folder, config)
    stages.stage_distill(run)
    stages.stage_teacher(run)
    stages.stage_extract(run)
    job = reference_job(config, "convnet", "front_rear_task", 0)
    record = json.loads(stages.stage_cell(run, job).read_text())
    record.pop("train_seconds")
    chunks = sorted(p for p in (run.dir.store / "teachers").rglob("*") if p.is_file() and "c" in p.parts)
    synthetic = torch.load(run.dir.synthetic, weights_only=True)[
        "sha256"
    ]  # the file also holds the seconds it took
    return synthetic, [sha256_file(p) for p in chunks], record


@pytest.mark.slow
def test_a_first_run_gives_the_bytes_of_a_later_run(toy_npz, tmp_path, monkeypatch):
    _forget_the_machine(monkeypatch, tmp_path / "cache")
    first = _stages_and_one_cell(toy_npz, tmp_path / "first")  # measures the inference batch on the way
    assert (tmp_path / "cache" / "elfdd" / "inference_batch.json").exists()
    inference._per_machine.cache_clear()  # a later process on the same machine: reads the kept measurement
    anatomy_module.cache_clear()
    pairing_module._student_plan.cache_clear()
    later = _stages_and_one_cell(toy_npz, tmp_path / "later")
    assert first == later


@pytest.mark.parametrize("probe", ["anatomy_of", "inference_batch"])
def test_a_probe_draws_nothing_from_the_global_random_streams(probe, tmp_path, monkeypatch):
    _forget_the_machine(monkeypatch, tmp_path)
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    if probe == "anatomy_of":
        for arch in list_models():
            anatomy_of(arch, (1, 28, 28), 10)
    else:
        inference.cpu_inference_batch()
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("arch", list_models())
def test_the_inference_batch_cannot_change_a_result(arch):
    """The measured batch is a speed setting only: a forward pass in eval mode gives the same bits in passes of any
    candidate size (else a machine's measurement would change its features and accuracies)."""
    from elfdd.models import create_model

    torch.manual_seed(0)
    model = create_model(arch, 1, 10, 28).eval()
    images = torch.randn(inference.PROBE_IMAGES, 1, 28, 28)
    with torch.inference_mode():
        outputs = {
            size: torch.cat([model(images[i : i + size]) for i in range(0, len(images), size)])
            for size in inference.CANDIDATES
        }
    largest = outputs[max(outputs)]
    assert all(torch.equal(out, largest) for out in outputs.values())
