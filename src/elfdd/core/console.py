"""What a terminal (or a notebook) shows of a run: elfdd's log lines, and live progress bars for the records that
say how far a piece of work is (``extra={"progress": (what, done, total)}``: a distillation's iterations, a
teacher's epochs, a student's epochs, the student grid's cells).

On a terminal the bars are rich's (done/total, elapsed, time left) under the scrolling lines; anywhere else (CI, a
log file, a pipe) every record stays one plain ``HH:MM:SS message`` line, as before."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

PLAIN_FORMAT = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
MODES = ("auto", "bar", "plain")


def progress_of(record: logging.LogRecord) -> tuple[str, int, int] | None:
    """(what, done, total) of a record that carries progress, else None."""
    value = getattr(record, "progress", None)
    if isinstance(value, tuple) and len(value) == 3:
        return value
    return None


def wants_bars(mode: str, stream: TextIO) -> bool:
    """``bar``: always; ``plain``: never; ``auto``: on a terminal (not a dumb one) or in a notebook."""
    if mode not in MODES:
        raise ValueError(f"progress display {mode!r} is none of {', '.join(MODES)}")
    if mode != "auto":
        return mode == "bar"
    from rich.console import Console

    console = Console(file=stream)
    return console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)


class BarHandler(logging.Handler):
    """Log records as lines above rich progress bars, one bar per piece of work that reports progress; a bar goes
    when its work is done (its last line stays)."""

    def __init__(self, stream: TextIO | None = None, force_terminal: bool | None = None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__()
        console = Console(file=stream or sys.stderr, force_terminal=force_terminal, highlight=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=4,
            transient=True,
        )
        self.bars: dict[str, Any] = {}
        self.started = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not self.started:
                self.progress.start()
                self.started = True
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self.progress.console.print(f"{stamp} {record.getMessage()}", markup=False, highlight=False)
            progress = progress_of(record)
            if progress is not None:
                self._advance(*progress)
        except Exception:
            self.handleError(record)

    def _advance(self, what: str, done: int, total: int) -> None:
        bar = self.bars.get(what)
        if bar is None:
            bar = self.bars[what] = self.progress.add_task(what, total=total)
        self.progress.update(bar, completed=done, total=total)
        if done >= total:
            self.progress.remove_task(bar)
            del self.bars[what]

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False
        super().close()


def console_handler(mode: str = "auto", stream: TextIO | None = None) -> logging.Handler:
    """The handler that shows elfdd's records on ``stream`` (stderr by default): bars where :func:`wants_bars`,
    plain lines otherwise."""
    stream = stream or sys.stderr
    if wants_bars(mode, stream):
        return BarHandler(stream, force_terminal=True if mode == "bar" else None)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PLAIN_FORMAT)
    return handler


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Countdown:
    """ "k of N" lines for N pieces of work (the student grid's tasks or cells): what each gave and the time left at
    the rate so far, counted from ``started`` (default: now). Each line carries the progress for the bars."""

    def __init__(
        self,
        what: str,
        total: int,
        logger: logging.Logger | logging.LoggerAdapter,
        started: float | None = None,
    ):
        self.what, self.total, self.logger, self.finished = what, total, logger, 0
        self.started = time.monotonic() if started is None else started

    def done(self, said: str = "") -> None:
        self.finished += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.finished * (self.total - self.finished)
        self.logger.info(
            "%s %d of %d%s (%s, about %s left)",
            *(self.what, self.finished, self.total, f" {said}" if said else "", clock(elapsed), clock(left)),
            extra={"progress": (self.what, self.finished, self.total)},
        )
