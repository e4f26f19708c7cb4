"""One protocol for a stage of a run (distill, each teacher, extract, each student cell): the key of its inputs,
where its output lives, how it is built. ``build_stage`` keeps an output whose inputs' key is unchanged
(core.keyed) and whose files still match the digests recorded when it was made, else builds it (resuming from the
stage's resume point, keyed the same) and records the key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from ...core.errors import write_errors_refused
from ..training import log
from .keys import finished, mark_finished
from .run import Run


class Stage(Protocol):
    """A keyed piece of a run's work. ``kept`` and ``finish`` default to the stage marker ``stages/<name>.json``
    (KeyedStage); a student cell's record carries its own key instead."""

    @property
    def name(self) -> str: ...

    def key(self, run: Run) -> str: ...

    def output(self, run: Run) -> Path: ...

    def build(self, run: Run, key: str) -> None: ...

    def kept(self, run: Run, key: str) -> bool: ...

    def finish(self, run: Run, key: str, started: float) -> None: ...

    def damage(self, run: Run) -> str | None: ...

    def bytes_written(self, run: Run) -> int | None: ...


class KeyedStage:
    """The stage-marker half of the protocol, shared by the stages whose output is a file or folder."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def output(self, run: Run) -> Path:
        raise NotImplementedError

    def kept(self, run: Run, key: str) -> bool:
        return finished(run.dir, self.name, key, self.output(run))

    def finish(self, run: Run, key: str, started: float) -> None:
        mark_finished(run.dir, self.name, key, self.output(run), started)

    def damage(self, run: Run) -> str | None:
        """What no longer matches the digests recorded when the kept output was made (None: nothing)."""
        return None

    def bytes_written(self, run: Run) -> int | None:
        """About how many bytes building the stage writes at most (resume points included; None: not known),
        for the message of a full disk."""
        return None


def build_stage(stage: Stage, run: Run, force: bool = False) -> Path:
    """The stage's output: kept when its inputs' key is unchanged (unless ``force``), else built and keyed."""
    started = time.perf_counter()
    key = stage.key(run.configured())
    if not force and stage.kept(run, key):
        damage = stage.damage(run)
        if damage is None:
            return stage.output(run)
        log.warning("%s: %s (changed after it was made); making it again", stage.name, damage)
    # A full disk, a read-only place: one line naming the file and the space the stage needs.
    with write_errors_refused(lambda: stage.bytes_written(run)):
        stage.build(run, key)
        stage.finish(run, key, started)
    return stage.output(run)
