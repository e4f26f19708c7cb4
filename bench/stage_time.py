"""The student stage's wall time as it runs inside a pipeline: the `students` flow of a finished run directory,
called in a process that already started Prefect's API server, imported the flows and loaded the run's data (as
the student stage of `elfdd run` finds them, after distill, teacher and extract ran in the same process).

    python bench/stage_time.py RUN_DIR [--set KEY=VALUE ...]

Prints `kept SECONDS` (every cell kept: the flow run, reading the records, the report) and `forced SECONDS` (the
whole grid retrained, as `elfdd students RUN_DIR --force`). bench/perf.py runs it in a fresh process.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from elfdd.flows.settings import quiet_prefect_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    quiet_prefect_env()  # before Prefect is imported
    logging.basicConfig(level=logging.WARNING)

    from elfdd.flows.flows import FLOWS, no_heartbeat
    from elfdd.pipeline import stages
    from elfdd.pipeline.config import load_config

    config = load_config(stages.RunDir(Path(args.run_dir)).config, args.set)
    students = FLOWS["students"]
    with no_heartbeat():
        students(args.run_dir, config, False)  # warm-up: server, imports, data, the kept records
        for label, force in (("kept", False), ("forced", True)):
            started = time.perf_counter()
            students(args.run_dir, config, force)
            print(f"{label} {time.perf_counter() - started:.3f}", flush=True)


if __name__ == "__main__":
    main()
