"""One protocol for a stage of a run (distill, each teacher, extract, each student cell): the key of its inputs,
where its output lives, how it is built. ``build_stage`` keeps an output whose inputs' key is unchanged
(core.keyed), else builds it (resuming from the stage's resume point, keyed the same) and records the key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from .keys import finished, mark_finished
from .run import Run


class Stage(Protocol):
    """A keyed piece of a run's work. ``kept`` and ``finish`` default to the stage marker ``stages/<name>.json``
    (KeyedStage); a student cell's record carries its own key instead."""

    name: str

    def key(self, run: Run) -> str: ...

    def output(self, run: Run) -> Path: ...

    def build(self, run: Run, key: str) -> None: ...

    def kept(self, run: Run, key: str) -> bool: ...

    def finish(self, run: Run, key: str, started: float) -> None: ...


class KeyedStage:
    """The stage-marker half of the protocol, shared by the stages whose output is a file or folder."""

    name: str

    def output(self, run: Run) -> Path:
        raise NotImplementedError

    def kept(self, run: Run, key: str) -> bool:
        return finished(run.dir, self.name, key, self.output(run))

    def finish(self, run: Run, key: str, started: float) -> None:
        mark_finished(run.dir, self.name, key, self.output(run), started)


def build_stage(stage: Stage, run: Run, force: bool = False) -> Path:
    """The stage's output: kept when its inputs' key is unchanged (unless ``force``), else built and keyed."""
    started = time.perf_counter()
    key = stage.key(run.configured())
    if not force and stage.kept(run, key):
        return stage.output(run)
    stage.build(run, key)
    stage.finish(run, key, started)
    return stage.output(run)
