"""The CPU inference batch is measured on the machine once and kept per machine (not a constant from one CPU);
ELFDD_INFERENCE_BATCH sets it by hand."""

from __future__ import annotations

import json

import pytest
import torch

from elfdd.core.errors import BadInput
from elfdd.pipeline import inference
from elfdd.pipeline.training import inference_batch


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("ELFDD_INFERENCE_BATCH", raising=False)
    inference._per_machine.cache_clear()
    yield tmp_path / "elfdd" / "inference_batch.json"
    inference._per_machine.cache_clear()


def test_the_batch_is_measured_once_per_machine_and_kept(cache, monkeypatch):
    measured = []
    real = inference.measure
    monkeypatch.setattr(inference, "measure", lambda: measured.append(real()) or measured[-1])
    first = inference_batch(torch.device("cpu"))
    assert first in inference.CANDIDATES and measured == [first]
    assert json.loads(cache.read_text()) == {inference.machine_key(): first}
    inference._per_machine.cache_clear()  # a new process on the same machine reads it back, measures nothing
    assert inference_batch(torch.device("cpu")) == first and len(measured) == 1


def test_the_environment_sets_it_by_hand(cache, monkeypatch):
    monkeypatch.setenv("ELFDD_INFERENCE_BATCH", "48")
    assert inference_batch(torch.device("cpu")) == 48 and not cache.exists()
    monkeypatch.setenv("ELFDD_INFERENCE_BATCH", "many")
    with pytest.raises(BadInput, match="whole number"):
        inference_batch(torch.device("cpu"))


def test_machines_with_one_model_name_and_other_vector_units_measure_apart(cache, monkeypatch):
    """Two 2-core "AMD EPYC" kinds were seen, one with AVX2 only, one with AVX-512: each gets its own choice."""
    monkeypatch.setattr(inference, "measure", lambda: 16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert inference_batch(torch.device("cpu")) == 16
    inference._per_machine.cache_clear()
    monkeypatch.setattr(inference, "measure", lambda: 256)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert inference_batch(torch.device("cpu")) == 256
    assert sorted(json.loads(cache.read_text()).values()) == [16, 256]


@pytest.mark.parametrize(
    ("seconds", "chosen"),
    [
        ({16: 4.0, 64: 1.2, 256: 1.0}, 256),  # the AVX-512/AMX Xeon: small passes far slower
        ({16: 0.95, 64: 0.97, 256: 1.0}, 256),  # within the tolerance: noise does not pick the small batch
        ({16: 1.0, 64: 1.05, 256: 1.2}, 64),  # the largest of those within 10% of the fastest
        ({16: 0.8, 64: 1.0, 256: 1.05}, 16),  # clearly faster (the AVX2 EPYC's best case)
    ],
)
def test_a_smaller_batch_is_chosen_only_when_clearly_faster(seconds, chosen):
    assert inference.pick(seconds) == chosen


def test_an_entry_of_an_older_probe_is_measured_again(cache, monkeypatch):
    """A choice kept under an earlier rule (the key without the probe's version) is not reused."""
    old_key = inference.machine_key().rsplit(" | probe", 1)[0]
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({old_key: 16}))
    monkeypatch.setattr(inference, "measure", lambda: 256)
    assert inference_batch(torch.device("cpu")) == 256
    assert json.loads(cache.read_text()) == {old_key: 16, inference.machine_key(): 256}
