"""A command stopped by SIGTERM (``timeout``, a scheduler, ``kill``) or SIGINT (Ctrl-C) stops at once and stops
everything it started (the temporary Prefect server, local Dask workers).

The command runs in a child process in a session of its own; this process only waits for it. On SIGTERM or
SIGINT it kills the child's whole process group with SIGKILL, prints one line and exits 128 + the signal number
(143, 130). A SIGKILL is what every stage already resumes from bitwise (docs/reliability.md); stopping in the
child itself would let Prefect's own SIGTERM bridge report a crash to a server that may already be gone (minutes of
retries), and a signal sent to the caller's process group (what ``timeout`` does) never reaches the child."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
CHILD = "ELFDD_SUPERVISED"  # set in the child: it runs the command itself


def supervised(argv: list[str]) -> int | None:
    """The exit code of ``elfdd argv`` run in a supervised child; None in the child itself (run the command)."""
    if os.environ.get(CHILD):
        return None
    child = subprocess.Popen(
        [sys.executable, "-m", "elfdd.flows", *argv], env={**os.environ, CHILD: "1"}, start_new_session=True
    )

    def stop(signum: int, frame) -> None:
        del frame
        # Not child.wait(): the handler may interrupt the main thread inside wait(), which holds its lock.
        _reap(child.pid)
        _show_cursor()
        name = signal.Signals(signum).name
        print(
            f"error: stopped by {name}; run the same command again to continue (finished work is kept)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    code = child.wait()
    _reap(child.pid)
    if code < 0:
        _show_cursor()
    return code if code >= 0 else 128 - code  # killed by a signal from elsewhere: the shell's convention


def _show_cursor() -> None:
    """A child killed while its progress bars were drawn (core/console.py) leaves the terminal's cursor hidden."""
    if sys.stderr.isatty():
        sys.stderr.write("\x1b[?25h")
        sys.stderr.flush()


def _reap(group: int) -> None:
    """Nothing of the child's outlives the command (a server a crashed child could not stop)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
