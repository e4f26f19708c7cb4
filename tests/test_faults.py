"""Faults a careless user or a broken machine causes (issue list in docs/reliability.md, "Faults tried"): every one
ends in one ``error:`` line and exit 2, touches nothing another process holds, and leaves a directory the same
command resumes."""

from __future__ import annotations

import os
import stat

from elfdd.pipeline import stages
from helpers import TINY_RUN, staged_run


def test_every_file_of_a_run_honours_the_umask(toy_npz, tmp_path):
    old = os.umask(0o022)
    try:
        run, config = staged_run(toy_npz, tmp_path / "run", [*TINY_RUN, "students.archs=[convnet]"])
        for job in stages.grid(config):
            stages.stage_student(run, config, job)
        stages.stage_report(run, config)
    finally:
        os.umask(old)
    files = [p for p in run.root.rglob("*") if p.is_file()]
    unreadable = [str(p.relative_to(run.root)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o644]
    assert len(files) > 20 and not unreadable
