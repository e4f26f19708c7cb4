"""Quiet, offline Prefect settings. Prefect reads its settings when it is imported, so the entry points (the CLI,
the test suite) call ``quiet_prefect_env`` before anything imports Prefect; importing elfdd changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "elfdd",  # stage progress reaches the flow run logs in the UI
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # the stages also run outside flows (tests, bench)
}


def quiet_prefect_env(home: Path | None = None) -> None:
    """Set the quiet offline defaults (a value the user already set wins) and a PREFECT_HOME."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(home or Path.home() / ".prefect"))
