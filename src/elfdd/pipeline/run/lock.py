"""One writer per run directory: an advisory lock (``DIR/.lock``, flock) held while a command or flow works on it.
A second process fails at once with a message naming the holder and touches nothing; the same process may re-enter
(a flow and its subflows). The kernel drops the lock when its holder dies, so a killed run never leaves a stale
lock. ``claimed_run`` adds what a refused command owes the directory: it leaves it as it found it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ...core.errors import BadInput, write_errors_refused

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
    fd = _acquire(Path(root), path)
    _held[path] = [fd, 1]
    try:
        yield
    finally:
        del _held[path]
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(root: Path, path: Path) -> int:
    """The flock on ``path``, on the file that is at ``path`` now: a lock taken on a lock file another process had
    just removed (a refused command's clean-up) would not exclude anyone, so that case tries again."""
    if root.exists() and not root.is_dir():
        raise BadInput(f"run directory {root} is a file, not a directory; pass another --out")
    while True:
        with write_errors_refused():
            root.mkdir(parents=True, exist_ok=True)
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
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def claimed_run(root: Path) -> Iterator[None]:
    """The run directory locked for this process (run_lock). A command refused as bad input (BadInput) leaves the
    directory as it found it: its ``config.yaml`` gets back the bytes it had (a refused ``--set`` or teacher import
    is not remembered), and a directory the command created that holds nothing but that file and the lock is
    removed. A refusal to take the lock happens before any of this: it touches nothing. Only the outermost claim of
    a process (the CLI's, around the flow's own) puts things back."""
    root = Path(root)
    if (root / ".lock").resolve() in _held:
        with run_lock(root):
            yield
        return
    created = not root.exists()
    with run_lock(root):
        config = root / "config.yaml"
        before = config.read_bytes() if config.exists() else None
        try:
            with write_errors_refused():
                yield
        except BadInput:
            _restore(root, config, before, created)
            raise


def _restore(root: Path, config: Path, before: bytes | None, created: bool) -> None:
    with contextlib.suppress(OSError):  # best effort: the refusal itself is what the user must see
        _put_back(root, config, before, created)


def _put_back(root: Path, config: Path, before: bytes | None, created: bool) -> None:
    from ...core.io import atomic_write_bytes

    if before is not None:
        if not config.exists() or config.read_bytes() != before:
            atomic_write_bytes(config, before)
    elif root.is_dir() and {p.name for p in root.iterdir()} <= {"config.yaml", ".lock"}:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for name in ("config.yaml", ".lock"):
                (root / name).unlink(missing_ok=True)
