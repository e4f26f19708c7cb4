"""Where a flow's tasks run (here one after the other, or in parallel on a Dask cluster) and which failures retry."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from ..core.console import Countdown
from ..core.errors import BadInput

log = logging.getLogger("elfdd")

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
    task,
    calls: Iterable[dict[str, Any]],
    dask_address: str | None = None,
    progress: str | None = None,
    pool: LocalPool | None = None,
    describe: Callable[[Any], str] | None = None,
    what: str | None = None,
) -> list[Any]:
    """Run ``task`` once per parameter dict (``what``: their name in the progress lines, the task's by default): here in order; with ``dask_address`` (a dask.distributed scheduler) as
    parallel tasks on its workers through prefect-dask; or, with a ``pool`` of more than one worker and no address,
    through prefect-dask on a local cluster of that many processes that lives as long as these calls. Every call
    runs to its end (finished work is kept) before the first failure is raised; returns the results in call order.
    ``progress``: the key of a progress artifact updated as calls finish; ``describe(result)``: what the progress
    line says of a finished call."""
    calls = list(calls)
    tracker = TaskProgress(progress, len(calls), what or task.name, describe)
    if dask_address:
        outcomes = _submit_all(task, calls, dask_runner(dask_address), tracker)
    elif pool is not None and pool.workers > 1:
        with quiet_local_cluster():
            outcomes = _submit_all(task, calls, local_runner(pool), tracker)
    else:
        outcomes = []
        for params in calls:
            outcomes.append(_outcome(task(**params, return_state=True).result))
            tracker.done(outcomes[-1])
    errors = [outcome for outcome in outcomes if isinstance(outcome, _Failed)]
    if errors:
        raise errors[0].exc
    return outcomes


def _submit_all(task, calls: list[dict[str, Any]], runner, tracker: TaskProgress) -> list[Any]:
    """Every call as a task of the task runner ``runner``; the outcomes in call order."""
    from prefect.futures import as_completed

    with runner:
        futures = [runner.submit(task, params) for params in calls]
        for future in as_completed(futures):
            tracker.done(_outcome(future.result))
        return [_outcome(future.result) for future in futures]  # the data lives with the futures


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _outcome(result: Callable[[], Any]) -> Any:
    try:
        return result()
    except Exception as exc:
        return _Failed(exc)


class TaskProgress:
    """A Prefect progress artifact (percent of calls finished) and a "task k of N" line per finished call, with what
    it gave (``describe(result)``, e.g. a cell's accuracy) and the time left (core/console.py's Countdown)."""

    def __init__(
        self, key: str | None, total: int, what: str, describe: Callable[[Any], str] | None = None
    ) -> None:
        from prefect.artifacts import create_progress_artifact
        from prefect.logging import get_run_logger

        # The student grid's lines (what each task gave) go to the terminal with the stages' own; other tasks' only
        # to the flow run's log.
        logger: Any = log if describe is not None else get_run_logger()
        self.countdown = Countdown(f"{what}: task", total, logger)
        self.total, self.describe = total, describe
        self.artifact = (
            create_progress_artifact(0.0 if total else 100.0, key=key, description=f"{what}: {total} tasks")
            if key
            else None
        )

    def done(self, result: Any = None) -> None:
        from prefect.artifacts import update_progress_artifact

        said = self.describe(result) if self.describe and not isinstance(result, _Failed | None) else ""
        self.countdown.done(said)
        if self.artifact is not None:
            update_progress_artifact(
                cast("UUID", self.artifact), 100.0 * self.countdown.finished / self.total
            )


def dask_runner(address: str, connect_timeout: float = 10):
    """prefect-dask's task runner on an existing scheduler; an address nobody answers on is bad input. The workers
    are told this process's Prefect API (PREFECT_API_URL, the server's or the temporary one the CLI started), so
    their task runs report there instead of each starting a temporary server of its own."""
    from distributed import Client
    from prefect.settings import PREFECT_API_URL
    from prefect_dask import DaskTaskRunner

    try:
        client = Client(address, timeout=connect_timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInput(f"no Dask scheduler answers at {address!r}: {str(exc).splitlines()[0]}") from None
    with client:
        api = PREFECT_API_URL.value()
        if api:
            client.run(use_prefect_api, api)
    return DaskTaskRunner(address=address)


def use_prefect_api(api: str) -> None:
    """On a Dask worker: its Prefect task runs report to ``api``."""
    os.environ["PREFECT_API_URL"] = api


# A worker process holds torch, the data and one student: about 1.5 GB at most (bench/perf.py scale lines). On the
# 2-core CPU the pool was slower than one process (README, "Several student cells at once"), so `workers` is 1
# unless asked for.
WORKER_MEMORY_BYTES = 2 << 30


@dataclass(frozen=True)
class LocalPool:
    """How many worker processes train student cells at once on this machine, with how many torch threads each."""

    workers: int
    threads: int

    @classmethod
    def for_cells(cls, cells: int, workers: int = 0, threads: int = 0, device: str = "cpu") -> LocalPool:
        """``workers`` 0 (auto): one per CPU core, at most one per cell and per 2 GB of available memory, and 1 on
        a GPU (whose work the cells would share); ``threads`` 0: the cores shared out among the workers."""
        cores = len(os.sched_getaffinity(0))
        if workers == 0:
            workers = (
                1
                if device == "cuda"
                else max(1, min(cores, cells, available_memory() // WORKER_MEMORY_BYTES))
            )
        workers = max(1, min(workers, cells))
        return cls(workers, threads or max(1, cores // workers))


def available_memory() -> int:
    import psutil

    return psutil.virtual_memory().available


def local_runner(pool: LocalPool):
    """prefect-dask's task runner on a dask.distributed LocalCluster of ``pool.workers`` processes on loopback,
    started when the runner is entered and closed with it; each worker's torch uses ``pool.threads`` threads."""
    from prefect_dask import DaskTaskRunner

    threads = str(pool.threads)
    log.info("training on %d local worker processes, %d torch threads each", pool.workers, pool.threads)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": pool.workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
            "env": {
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                "DASK_LOGGING__DISTRIBUTED": "warning",
            },
        },
    )


@contextlib.contextmanager
def quiet_local_cluster() -> Iterator[None]:
    """The length of a local cluster: distributed's start/stop lines kept out of the students' progress, and this
    process's environment as it was (the nannies set their workers' variables here too)."""
    chatty = logging.getLogger("distributed")
    level, environ = chatty.level, dict(os.environ)
    chatty.setLevel(logging.WARNING)
    try:
        yield
    finally:
        chatty.setLevel(level)
        os.environ.clear()
        os.environ.update(environ)
