"""How many images a CPU forward pass takes where nothing is trained (test evaluation, feature extraction, DM's
real embeddings): measured on the machine, once, not a constant from one CPU (the measurements behind this:
docs/benchmarks.md, "The CPU inference batch under load"). It is a speed setting only: every registered model gives
the same bits in passes of each candidate size (tests/test_first_run.py), and the probe draws nothing from the
seeded random streams. The choice is kept per machine (CPU model, vector instructions, thread
count, torch version) in ``$XDG_CACHE_HOME/elfdd/inference_batch.json`` (default ``~/.cache``), written under a
file lock so that every process on the machine uses the same value (a run's processes and its resumed runs
compute alike); ``ELFDD_INFERENCE_BATCH`` sets it by hand."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import platform
import time
from pathlib import Path

import torch

from ..core.errors import BadInput
from ..core.io import atomic_write_json

CANDIDATES = (16, 64, 256)
PROBE_IMAGES = 256
TOLERANCE = 0.1  # see pick
PROBE = 2  # the probe's version in the machine key: a new rule measures again


def cpu_inference_batch() -> int:
    """The measured CPU inference batch of this machine (or ``ELFDD_INFERENCE_BATCH``)."""
    given = os.environ.get("ELFDD_INFERENCE_BATCH")
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            raise BadInput(f"ELFDD_INFERENCE_BATCH must be a whole number, got {given!r}") from None
    return _per_machine(machine_key())


def machine_key() -> str:
    """CPU model, the vector instructions torch uses on it (two machines sold under one model name differ here:
    a 2-core "AMD EPYC" with AVX2 only and one with AVX-512), thread count, torch version and the probe's version
    (an entry measured under an older rule is not reused)."""
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"{_cpu_model()} | {capability} | {torch.get_num_threads()} threads | torch {torch.__version__}"
        f" | probe {PROBE}"
    )


@functools.lru_cache(maxsize=8)
def _per_machine(key: str) -> int:
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "elfdd"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / "inference_batch.lock", "a")  # noqa: SIM115 (held for the block below)
    except OSError:  # no writable cache: measured once per process
        return measure()
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "inference_batch.json"
        try:
            known = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            known = {}
        if not isinstance(known.get(key), int):
            known[key] = measure()
            atomic_write_json(path, known)
        return known[key]


def measure(repeats: int = 3) -> int:
    """The candidate batch for the DC ConvNet (width 128, 28x28 grey) in inference mode, fp32, by :func:`pick` from
    each candidate's fastest of ``repeats`` passes over PROBE_IMAGES images (a few seconds, once per machine). The
    repeats go round the candidates in turn, so that load from elsewhere (another process, the store's compression
    threads) slows all of them alike instead of one candidate's passes."""
    from ..models import probe_model

    model = probe_model("convnet", 1, 10, 28).eval()
    images = torch.randn(PROBE_IMAGES, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    seconds = dict.fromkeys(CANDIDATES, float("inf"))
    with torch.inference_mode():
        for size in CANDIDATES:
            model(images[:size])  # warm-up (kernel selection, allocation)
        for _ in range(repeats):
            for size in CANDIDATES:
                started = time.perf_counter()
                for start in range(0, PROBE_IMAGES, size):
                    model(images[start : start + size])
                seconds[size] = min(seconds[size], time.perf_counter() - started)
    return pick(seconds)


def pick(seconds: dict[int, float], tolerance: float = TOLERANCE) -> int:
    """The largest batch whose time for the probe is within ``tolerance`` of the fastest one's: a smaller batch must
    be clearly faster to be chosen, so timing noise cannot lock a machine into a small one (small passes lose most
    under load: docs/benchmarks.md)."""
    fastest = min(seconds.values())
    return max(size for size, t in seconds.items() if t <= fastest * (1 + tolerance))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
