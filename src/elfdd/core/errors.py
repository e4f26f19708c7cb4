"""The exception types that mean "the user's input is wrong" (CLI exit code 2), and a student that diverged."""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


class BadInput(Exception):
    """Bad config, data, store or checkpoint; the message is one line naming the field or file."""


class NumericalFault(BadInput):
    """A loss or the features became NaN or Inf: the stage stops, naming the model, epoch and term (usually a
    learning rate too high for the data)."""


class StudentDiverged(NumericalFault):
    """A student cell's loss term became NaN or Inf. With ``students.on_diverge: record`` the cell is recorded as
    diverged and the study goes on; with ``fail`` it stops the stage like any numerical fault (exit 2)."""

    def __init__(self, cell: str, term: str, epoch: int, value: float):
        super().__init__(f"student {cell}: loss term {term} is {value} at epoch {epoch}")
        self.cell, self.term, self.epoch, self.value = cell, term, epoch, value


# What a write can fail with that the user must fix (space, permissions, a read-only or vanished location); never
# retried, reported as one line naming the file.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}
)


class CannotWrite(BadInput):
    """A file of the run could not be written (full disk, read-only file system, no permission). Every file is
    written through a temp file and a rename, so nothing half-written is left to trust: free the space (or pick
    another place) and run the same command again."""


def cannot_write(exc: OSError, needed: int | None = None, where: str | None = None) -> CannotWrite:
    """``exc`` as one line naming the file (``where`` when the error does not: zarr's chunk writes); for a full disk,
    the space left there and (``needed``, bytes) what the work writes at most."""
    path = str(exc.filename or where or "a file")
    reason = exc.strerror or str(exc)
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(path)
        parts = [f"{free / 1e6:.1f} MB free there" if free is not None else ""]
        if needed:
            parts.append(f"the stage writes up to {needed / 1e6:.1f} MB")
        hint = f" ({'; '.join(p for p in parts if p)})" if any(parts) else ""
        hint += "; free some space and run the same command again (finished work is kept)"
    return CannotWrite(f"cannot write {path}: {reason}{hint}")


def _free_bytes(path: str) -> int | None:
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder if folder.is_dir() else folder.parent).free
    except OSError:
        return None


@contextlib.contextmanager
def write_errors_refused(
    needed: Callable[[], int | None] | None = None, where: str | None = None
) -> Iterator[None]:
    """Within: an OSError of WRITE_ERRNOS becomes CannotWrite (one line, exit 2) instead of a traceback.
    ``needed``: what the work writes at most, asked only when a write failed."""
    try:
        yield
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise cannot_write(exc, needed() if needed else None, where) from None
        raise
