"""One writer per run directory: an advisory lock (``DIR/.lock``, flock) held while a command or flow works on it.
A second process fails at once with a message naming the holder; the same process may re-enter (a flow and its
subflows). The kernel drops the lock when its holder dies, so a killed run never leaves a stale lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import BadInput

_held: dict[Path, list[int]] = {}  # lock file -> [fd, depth], for re-entry from the same process


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    path = (Path(root) / ".lock").resolve()
    if path in _held:
        _held[path][1] += 1
        try:
            yield
        finally:
            _held[path][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise BadInput(
            f"run directory {root} is in use by another elfdd process (pid {holder}); "
            "wait for it to finish or use another directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = [fd, 1]
    try:
        yield
    finally:
        del _held[path]
        os.close(fd)  # closing the descriptor releases the flock
