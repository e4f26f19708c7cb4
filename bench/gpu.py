"""The GPU checks of elfdd, in the order they are worth the device time (bench/gpu.sh runs this there):

1. the smoke pipeline (every stage, two students) on the device through the Python API: it runs, and its wall time;
2. the default config's pipeline (`make run`'s, 30 student cells) on the device: its wall time beside the CPU's
   budget, and its report;
3. DSA IPC 10 at the reference's 1000 iterations (issue 35: about 22 hours of the CPU), for the time left: the set
   when it finishes, else its resume point, so that the next lent machine (or the CPU) continues it.

Every result goes to --out (the device's $OUT: at most 8 files come back): gpu.log (these lines),
smoke_results.json, default_report.md, default_results.json, dsa_ipc10.tar (the set's run directory: synthetic.pt
or its resume point, config, stage marker; unpack it into bench/sets/). --quick: toy budgets, to check the plumbing
on a CPU (bash bench/gpu.sh check).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import elfdd.api as elfdd

BUDGET_S = 520  # the device call's 560 s limit, less the install and the copies
TOY = ["students.epochs=2", "data.train_subset=600", "data.test_subset=200", "students.seeds=[0]"]


def say(out: Path, line: str) -> None:
    print(line, flush=True)
    with (out / "gpu.log").open("a") as log:
        log.write(line + "\n")


def pipeline(out: Path, work: Path, name: str, device: str, quick: bool) -> float:
    """One config's whole pipeline on ``device``; its wall time, and its results (and report) copied to ``out``."""
    started = time.perf_counter()
    overrides = [f"device={device}", *(TOY if quick else [])]
    table = elfdd.evaluate(
        work / name, config="smoke" if quick else name, overrides=overrides, progress=False
    )
    seconds = time.perf_counter() - started
    shutil.copy(work / name / "results.json", out / f"{name}_results.json")
    if name == "default":
        shutil.copy(work / name / "report.md", out / "default_report.md")
    say(out, f"{name}: {seconds:.1f} s on {device}, {len(table)} rows")
    say(out, table.to_string(max_cols=8))
    return seconds


def dsa_ipc10(out: Path, device: str, seconds_left: float, quick: bool) -> None:
    """bench/sets.py's dsa_ipc10 until done or ``seconds_left``; the run directory (set or resume point) to out."""
    sets = out / "sets" if quick else Path("bench/sets")  # a toy set never lands among the study's
    extra = ["--set", f"device={device}", *(["--set", "distill.iterations=2"] if quick else [])]
    command = [sys.executable, "bench/sets.py", "--out", str(sets), "--sets", "dsa_ipc10", *extra]
    try:
        subprocess.run(command, timeout=max(seconds_left, 1), check=True)
        say(out, "dsa_ipc10: distilled")
    except subprocess.TimeoutExpired:
        say(out, "dsa_ipc10: stopped at the time limit; its resume point comes back")
    with tarfile.open(out / "dsa_ipc10.tar", "w") as tar:
        tar.add(sets / "dsa_ipc10", arcname="dsa_ipc10")
    if (sets / "sets.json").exists():
        shutil.copy(sets / "sets.json", out / "sets.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="toy budgets: the plumbing, on any machine")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    say(args.out, f"# {time.strftime('%Y-%m-%d %H:%M')} torch {torch.__version__} on {where}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here")
    with tempfile.TemporaryDirectory() as work:
        pipeline(args.out, Path(work), "smoke", args.device, args.quick)
        pipeline(args.out, Path(work), "default", args.device, args.quick)
    left = 30 if args.quick else BUDGET_S - (time.perf_counter() - started)  # quick: the resume path, briefly
    dsa_ipc10(args.out, args.device, left, args.quick)
    say(args.out, f"# done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
