"""What the terminal shows: plain lines where output is not a terminal, live bars (rich) where it is, progress
records from the stages, the student grid's "task k of N" lines, the final summary table, and a CLI that says in one
line what to install when Prefect is missing."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

import pytest

from elfdd.core.console import BarHandler, console_handler, progress_of, wants_bars
from elfdd.pipeline.report.stage import summary_table
from elfdd.pipeline.training import Progress

ESCAPE = re.compile(r"\x1b\[")


def _record(message: str, progress=None) -> logging.LogRecord:
    record = logging.LogRecord("elfdd", logging.INFO, __file__, 1, message, (), None)
    if progress is not None:
        record.progress = progress
    return record


def test_not_a_terminal_gets_plain_lines():
    stream = io.StringIO()
    handler = console_handler("auto", stream)
    assert not isinstance(handler, BarHandler)
    handler.emit(_record("distill dm 1/4 loss 3.0", ("distill dm", 1, 4)))
    line = stream.getvalue()
    assert re.fullmatch(r"\d\d:\d\d:\d\d distill dm 1/4 loss 3\.0\n", line)
    assert not ESCAPE.search(line)


def test_a_terminal_gets_bars_with_done_of_total_and_the_lines_above():
    stream = io.StringIO()
    handler = console_handler("bar", stream)
    assert isinstance(handler, BarHandler)
    for step in range(1, 5):
        handler.emit(_record(f"student x {step}/4 task 1.0", ("student x", step, 4)))
        if step == 2:
            assert "student x" in handler.bars  # a bar while the work goes on
            handler.progress.refresh()
    assert "student x" not in handler.bars  # and none once it is done
    handler.close()
    shown = stream.getvalue()
    assert "student x 4/4 task 1.0" in shown
    assert "2/4" in shown and ESCAPE.search(shown)


def test_progress_mode_is_checked():
    assert wants_bars("plain", io.StringIO()) is False
    with pytest.raises(ValueError, match="none of auto, bar, plain"):
        wants_bars("fancy", io.StringIO())


def test_the_stages_progress_lines_carry_done_and_total(caplog):
    caplog.set_level(logging.INFO, logger="elfdd")
    progress = Progress("distill dm", 20, every=10)
    for step in range(1, 21):
        progress(step, "loss 1.0")
    carried = [progress_of(r) for r in caplog.records if progress_of(r)]
    assert carried == [("distill dm", 10, 20), ("distill dm", 20, 20)]


def test_summary_table_has_a_row_per_student_and_a_column_per_arm(tmp_path):
    from elfdd.pipeline.stages import RunDir

    entry = {"view_policy": None, "diverged": 0, "n": 3}
    summary = [
        {**entry, "student": "convnet", "mode": "baseline", "mean": 0.801},
        {**entry, "student": "convnet", "mode": "elf", "view_policy": "replay", "mean": 0.85},
        {**entry, "student": "vgg11", "mode": "baseline", "mean": 0.7},
        {**entry, "student": "vgg11", "mode": "elf", "view_policy": "clean", "mean": 0.6},
    ]
    (tmp_path / "results.json").write_text(
        json.dumps({"summary": summary, "reference": {"view_policy": "replay"}})
    )
    table = summary_table(RunDir(tmp_path)).splitlines()
    assert table[0].split() == ["student", "baseline", "elf", "(replay)", "elf", "(clean)"]
    assert set(table[1]) == {"-"}
    assert table[2].split() == ["convnet", "80.1%", "85.0%", "-"]
    assert table[3].split() == ["vgg11", "70.0%", "-", "60.0%"]


def test_the_command_line_without_prefect_says_what_to_install(tmp_path):
    """Prefect is an extra: without it the stage commands are refused in one line (exit 2, nothing written) and
    what needs no flow still works."""
    script = "import sys; sys.modules['prefect'] = None; from elfdd.flows.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "run"
    refused = subprocess.run(
        [sys.executable, "-c", script, "run", "--config", "smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: `elfdd run` runs its stages as Prefect flows: pip install 'elfdd[prefect]' "
        "(the Python API, elfdd.api, needs no Prefect)"
    ]
    assert not out.exists()
    version = subprocess.run(
        [sys.executable, "-c", script, "--version"], capture_output=True, text=True, timeout=300
    )
    assert version.returncode == 0 and version.stdout.startswith("elfdd ")


@pytest.mark.slow
def test_a_stopped_command_on_a_terminal_gives_the_cursor_back(tmp_path, fashion_mnist_available):
    """On a terminal the bars hide the cursor; Ctrl-C kills the command's child at once, and the command shows the
    cursor again before its `stopped by` line."""
    import os
    import pty
    import select
    import signal
    import time

    primary, secondary = pty.openpty()
    command = subprocess.Popen(
        [sys.executable, "-m", "elfdd.flows", "run", "--config", "smoke", "--out", str(tmp_path / "run")],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "TERM": "xterm"},
    )
    os.close(secondary)
    shown, deadline = b"", time.monotonic() + 300
    while b"\x1b[?25l" not in shown and time.monotonic() < deadline:  # the bars are up
        if select.select([primary], [], [], 1)[0]:
            shown += os.read(primary, 65536)
    command.send_signal(signal.SIGINT)
    assert command.wait(60) == 128 + signal.SIGINT
    while select.select([primary], [], [], 1)[0]:
        try:
            shown += os.read(primary, 65536)
        except OSError:
            break
    os.close(primary)
    assert b"\x1b[?25l" in shown and shown.rindex(b"\x1b[?25h") > shown.rindex(b"\x1b[?25l")
    assert b"stopped by SIGINT" in shown
