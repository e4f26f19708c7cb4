"""The standard cross-architecture study: Fashion-MNIST, a DM set distilled with ConvNet, every student of the zoo
trained baseline vs ELF from one feature store over several seeds; writes docs/results.md (tables, plots, wall
time) and docs/results.json (the results.json schema of DESIGN.md).

    python bench/cross_arch.py [--out runs/cross_arch] [--ipc 10] [--epochs 300] [--seeds 0,1,2]
                               [--students convnet,resnet18,...] [--docs docs] [--set KEY=VALUE ...]

Re-running reuses finished student cells (same cache key). Prints one line per student:
`gain STUDENT ARM VALUE ± STD points` (ELF minus baseline, paired by seed) and the wall time per stage.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import torch
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.report import arm, baselines, paired_gain

STUDENTS = "convnet,resnet18,vgg11,alexnet,mlp,tv_resnet18,tv_mobilenet_v3_small"


def study_overrides(args: argparse.Namespace) -> list[str]:
    return [
        "distill.method=dm",
        "distill.arch=convnet",
        f"distill.ipc={args.ipc}",
        f"students.archs=[{args.students}]",
        "students.modes=[task,front_rear_task]",
        f"students.epochs={args.epochs}",
        f"students.seeds=[{args.seeds}]",
        *args.set,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/cross_arch")
    parser.add_argument("--config", default="configs/default.yaml", help="base config the study overrides")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--students", default=STUDENTS)
    parser.add_argument("--docs", default="docs", help="where results.md, results.json and results/ go")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    config = load_config(args.config, study_overrides(args))
    run = stages.prepare_run(Path(args.out), config)
    started = time.perf_counter()
    seconds = stages.stage_store(run, config)
    print("# " + ", ".join(f"{name}: {value:.0f} s" for name, value in seconds.items()), flush=True)
    t0 = time.perf_counter()
    jobs = stages.grid(config)
    for i, job in enumerate(jobs, 1):
        record = json.loads(stages.stage_student(run, config, job).read_text())
        outcome = "diverged" if record["test_acc"] is None else f"{100 * record['test_acc']:.2f} %"
        print(f"# student {i}/{len(jobs)} {job.name}: {outcome}", flush=True)
    seconds["students"] = time.perf_counter() - t0
    stages.stage_report(run, config)
    seconds["total"] = time.perf_counter() - started
    results = json.loads(run.results.read_text())
    for student in config.students.archs:
        elf = [r for r in results["runs"] if r["student"] == student and arm(r).startswith("elf")]
        gain = paired_gain(elf, baselines(results))
        print(f"gain {student} {100 * gain[0]:+.2f} ± {100 * gain[1]:.2f} points (n={gain[2]})")
    print("# wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    write_docs(run, Path(args.docs), seconds, results)


def write_docs(run: stages.RunDir, docs: Path, seconds: dict[str, float], results: dict) -> None:
    """docs/results.md (the report with the command, machine and wall time), docs/results/*.png, docs/results.json."""
    plots = docs / "results"
    plots.mkdir(parents=True, exist_ok=True)
    for png in run.plots.glob("*.png"):
        shutil.copy2(png, plots / png.name)
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    header = [
        f"<!-- written by bench/cross_arch.py on {date.today()}; do not edit by hand -->",
        "",
        f"Command: `python {' '.join(sys.argv)}` on {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads.",
        "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".",
        "",
    ]
    body = run.report.read_text().replace("](plots/", "](results/")
    title, _, rest = body.partition("\n")
    (docs / "results.md").write_text("\n".join([title, "", *header, rest.lstrip("\n")]))
    (docs / "results.json").write_text(json.dumps({**results, "wall_seconds": seconds}, indent=1))
    print(f"# wrote {docs / 'results.md'}, {docs / 'results.json'} and {plots}/")


if __name__ == "__main__":
    main()
