"""Where a flow's tasks run (here one after the other, or in parallel on a Dask cluster) and which failures retry."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from typing import Any

from ..pipeline.errors import BadInput

# OS errors a second try can cure (a busy or flaky file system, a dropped connection); a missing file, a denied
# permission or a full disk are the user's to fix and fail at once.
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE}
RETRIES = 2
RETRY_DELAYS = [1, 5]


def is_transient(exc: BaseException) -> bool:
    """Connection drops, timeouts and the OS errors above; never bad input or a bug."""
    if isinstance(exc, BadInput):
        return False
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def retry_transient(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed task run only when its exception is transient."""
    del task, task_run
    return is_transient(state.result(raise_on_failure=False))


def run_tasks(
    task, calls: Iterable[dict[str, Any]], dask_address: str | None = None, progress: str | None = None
) -> list[Any]:
    """Run ``task`` once per parameter dict: here in order, or, with ``dask_address`` (a dask.distributed
    scheduler), as parallel tasks on its workers through prefect-dask. Every call runs to its end (finished work is
    kept) before the first failure is raised; returns the results in call order. ``progress``: the key of a
    progress artifact updated as calls finish."""
    calls = list(calls)
    tracker = TaskProgress(progress, len(calls), task.name)
    if not dask_address:
        outcomes = []
        for params in calls:
            outcomes.append(_outcome(task(**params, return_state=True).result))
            tracker.done()
    else:
        from prefect.futures import as_completed

        with dask_runner(dask_address) as runner:
            futures = [runner.submit(task, params) for params in calls]
            for _ in as_completed(futures):
                tracker.done()
            outcomes = [_outcome(future.result) for future in futures]  # the data lives with the futures
    errors = [outcome for outcome in outcomes if isinstance(outcome, _Failed)]
    if errors:
        raise errors[0].exc
    return outcomes


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _outcome(result: Callable[[], Any]) -> Any:
    try:
        return result()
    except Exception as exc:
        return _Failed(exc)


class TaskProgress:
    """A Prefect progress artifact (percent of calls finished) and a log line per finished call."""

    def __init__(self, key: str | None, total: int, what: str):
        from prefect.artifacts import create_progress_artifact
        from prefect.logging import get_run_logger

        self.total, self.finished, self.what = total, 0, what
        self.logger = get_run_logger()
        self.artifact = (
            create_progress_artifact(0.0, key=key, description=f"{what}: {total} tasks") if key else None
        )

    def done(self) -> None:
        from prefect.artifacts import update_progress_artifact

        self.finished += 1
        self.logger.info("%s: %d/%d tasks finished", self.what, self.finished, self.total)
        if self.artifact is not None:
            update_progress_artifact(self.artifact, 100.0 * self.finished / self.total)


def dask_runner(address: str, connect_timeout: float = 10):
    """prefect-dask's task runner on an existing scheduler; an address nobody answers on is bad input."""
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    try:
        Client(address, timeout=connect_timeout).close()
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInput(f"no Dask scheduler answers at {address!r}: {str(exc).splitlines()[0]}") from None
    return DaskTaskRunner(address=address)
