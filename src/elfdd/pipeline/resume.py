"""Resume points: the whole state of a long loop (tensors, optimisers, every RNG stream, progress) saved atomically
at step boundaries, so a stage killed at any moment continues from its last resume point and ends bitwise where an
uninterrupted run ends. A resume point records the key of the stage's inputs and is ignored under other inputs."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..core.io import atomic_torch_save, load_failure
from .training import log


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The loop's generator and the global streams (weight init draws from torch's), as tensors and plain values so
    the resume point loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = cast(
        "tuple[str, np.ndarray, int, int, float]", np.random.get_state()
    )
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])


class ResumePoint:
    """``path`` holds {key, step, state} of the last finished step; None: resuming is off."""

    def __init__(self, path: Path | None, key: str):
        self.path, self.key = path, key
        # the work's running time: this invocation's, from here, plus the earlier invocations' up to their last
        # resume point (read by load), so that a stage resumed across sessions can say what it took in all
        self.started, self.earlier = time.perf_counter(), 0.0

    def load(self) -> tuple[int, dict[str, Any]] | None:
        """(step, state) of a resume point made under the same inputs, else None."""
        if self.path is None or not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a resume point only saves time: a damaged one is redone, not trusted
            log.warning("resume point %s unreadable (%s); starting over", self.path, load_failure(exc))
            return None
        if saved.get("key") != self.key:
            log.info("resume point %s belongs to other inputs; starting over", self.path)
            return None
        log.info("resuming from %s after step %d", self.path, saved["step"])
        self.earlier = float(saved.get("seconds", 0.0))  # resume points before 2026-12-07 did not keep it
        return saved["step"], saved["state"]

    def save(self, step: int, state: dict[str, Any]) -> None:
        if self.path is not None:
            atomic_torch_save(
                self.path, {"key": self.key, "step": step, "state": state, "seconds": self.seconds()}
            )

    def seconds(self) -> float:
        """The work's seconds so far: the earlier invocations' (to their last resume point) and this one's."""
        return self.earlier + time.perf_counter() - self.started

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def beside(self, name: str) -> ResumePoint:
        """A second resume point of the same stage and key (``resume/<name>.pt``), for a part of its work."""
        return ResumePoint(None if self.path is None else self.path.with_name(f"{name}.pt"), self.key)


NO_RESUME = ResumePoint(None, "")
