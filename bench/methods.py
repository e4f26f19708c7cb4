"""The two remedies side by side (issue 35): every set distilled by bench/sets.py (DM, DSA, MTT, the random-subset
yardstick; MetaDD when distilled) evaluated the same way: the study's two width-matched teachers (its kept
checkpoints, imported: the teachers do not depend on the set), one store per set, and per set ConvNet, ResNet18,
VGG11, AlexNet and MLP x baseline and ELF (elfdd's defaults of configs/study.yaml) x seeds 0-2 x 300 epochs on the
full test set.

    nohup .venv/bin/python bench/methods.py >> bench/methods/methods.log 2>&1 &     # resumable
    .venv/bin/python bench/methods.py --sets dm_ipc1 --set students.epochs=2      # a quick look
    .venv/bin/python bench/methods.py --render                                     # docs/methods.md only

Each set's run directory is ``OUT/<set>/`` (its synthetic set copied from bench/sets/<set>/; no distillation
here). Every finished cell is kept (its record, keyed by its inputs), so a killed study continues where it
stopped; after each set its report is written and docs/methods.md is rendered again from every set's results.json
(per set: accuracy and paired gain per student; then one summary row per set).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from arms import train_grid
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.report import baselines, gain_text, markdown_table, mean_accuracy, paired_gain
from elfdd.pipeline.synthetic import load_synthetic

STUDY = Path("bench/study/store/checkpoints")
STUDENTS = ["convnet", "resnet18", "vgg11", "alexnet", "mlp"]
# The study's own set (configs/study.yaml: DM IPC 10, 1000 iterations), taken from its store rather than distilled
# again by bench/sets.py.
STUDY_SET = "dm_ipc10"
# The sets evaluated with the soft-label arms too (issue 35): kd (soft labels + task loss) and elf_kd (ELF + them).
SOFT_LABEL_SETS = {"dm_ipc10", "mtt_ipc10"}
SOFT_LABEL_MODES = "students.loss_modes=[task,front_rear_task,logit_task,front_rear_logit_task]"


def set_source(name: str, sets: Path) -> tuple[Path, list[str], str]:
    """A set's synthetic.pt, its distill overrides and its content sha256."""
    if name == STUDY_SET:
        path = STUDY.parent / "synthetic.pt"
        return path, ["distill.ipc=10"], load_synthetic(path).sha256
    recorded = json.loads((sets / "sets.json").read_text())[name]
    return sets / name / "synthetic.pt", recorded["overrides"], recorded["sha256"]


def teachers_override(study: Path) -> str:
    """The study's two teachers, imported from its checkpoints at epochs 5 and 10 (configs/study.yaml)."""

    def teacher(teacher_id: str, kwargs: str) -> str:
        paths = ", ".join(str((study / teacher_id / f"epoch_{e:04d}.pt").resolve()) for e in (5, 10))
        return (
            f"{{id: {teacher_id}, arch: convnet, {kwargs}source: checkpoint, paths: [{paths}], "
            "checkpoint_epochs: [5, 10]}"
        )

    return f"teachers=[{teacher('convnet', '')}, {teacher('convnet_w512', 'arch_kwargs: {widths: [64, 128, 512]}, ')}]"


def evaluate_set(name: str, sets: Path, out: Path, config_path: str, extra: list[str]) -> Path:
    """One set's store and cells (each kept when finished) and its report; returns its results.json."""
    source, distilled, sha256 = set_source(name, sets)
    overrides = [
        *distilled,
        teachers_override(STUDY),
        f"students.archs=[{','.join(STUDENTS)}]",
        "extract.teacher_epochs=[5]",
        *([SOFT_LABEL_MODES] if name in SOFT_LABEL_SETS else []),
        *extra,
    ]
    config = load_config(config_path, overrides)
    run = stages.prepare_run(out / name, config)
    if not run.dir.synthetic.exists() or load_synthetic(run.dir.synthetic).sha256 != sha256:
        shutil.copy2(source, run.dir.synthetic)
    stages.stage_teacher(run)
    stages.stage_extract(run)
    train_grid(run, name)
    return run.dir.results


def improvement_over_random(
    runs: list[dict], yardstick: dict, student: str, mode: str
) -> tuple[float, float, int]:
    """DD-Ranking's IOR (ddranking/metrics/hard_label.py, ``compute_metrics``: ``ior = syn_acc - random_acc`` per
    evaluation, then mean and np.std over the evaluations): here per seed, the set's accuracy minus the accuracy of
    the random real subset of the same IPC (bench/sets.py ``random_ipc<N>``) trained under the same student, arm and
    seed. DD-Ranking scores a run by its best accuracy over the last 20 % of epochs; elfdd by its final one."""
    random_acc = {
        r["seed"]: r["test_acc"]
        for r in yardstick["runs"]
        if r["student"] == student and r["mode"] == mode and r["test_acc"] is not None
    }
    ior = [
        r["test_acc"] - random_acc[r["seed"]]
        for r in runs
        if r["test_acc"] is not None and r["seed"] in random_acc
    ]
    return (float(np.mean(ior)), float(np.std(ior)), len(ior)) if ior else (float("nan"), 0.0, 0)


def accuracy(runs: list[dict]) -> str:
    held = mean_accuracy(runs)
    return "–" if held is None else f"{100 * held[0]:.2f} ± {100 * held[1]:.2f} (n={len(runs)})"


def render(out: Path, docs: Path) -> None:
    """docs/methods.md from every finished set's results.json."""
    finished = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/results.json"))}
    lines = [
        "# Cross-method study: ELF on DM, DSA, MTT and random-subset sets",
        "",
        "Rendered by `bench/methods.py` from `bench/methods/<set>/results.json` (every set evaluated by the same "
        "students from the study's two teachers; 300 epochs, 3 seeds, the full test set unless a row says "
        "otherwise). Gains are paired by seed (ELF minus baseline). IOR (DD-Ranking's improvement over random): the "
        "set minus the random real subset of the same IPC under the same student, arm and seed (points).",
        "",
    ]
    summary = []
    for name, results in finished.items():
        runs, paired = results["runs"], baselines(results)
        yardstick = finished.get(f"random_ipc{results['synthetic']['ipc']}")
        epochs = sorted({r["epochs"] for r in runs})
        rows = []
        for student in dict.fromkeys(r["student"] for r in runs):
            base = [r for r in runs if r["student"] == student and r["mode"] == "baseline"]
            elf = [r for r in runs if r["student"] == student and r["mode"] == "elf"]
            ior = [
                gain_text(improvement_over_random(cells, yardstick, student, mode))
                if yardstick is not None and yardstick is not results
                else "–"
                for mode, cells in (("baseline", base), ("elf", elf))
            ]
            rows.append([student, accuracy(base), accuracy(elf), gain_text(paired_gain(elf, paired)), *ior])
        lines += [f"## {name} (students {', '.join(map(str, epochs))} epochs)", ""]
        header = ["student", "baseline %", "ELF %", "ELF gain (points)", "IOR baseline", "IOR ELF"]
        lines += markdown_table(header, rows)
        lines.append("")
        summary.append([name, *(row[3] for row in rows)])
    if summary:
        lines += ["## Summary: ELF's paired gain per set and student", ""]
        lines += markdown_table(["set", *STUDENTS], summary)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "methods.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets-dir", default="bench/sets", help="where bench/sets.py put the sets")
    parser.add_argument("--sets", default="", help="comma-separated set names (default: every finished set)")
    parser.add_argument("--out", default="bench/methods")
    parser.add_argument("--config", default="configs/study.yaml")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--render", action="store_true", help="only render docs/methods.md from kept results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("elfdd").setLevel(logging.INFO)
    out, sets = Path(args.out), Path(args.sets_dir)
    if not args.render:
        finished = json.loads((sets / "sets.json").read_text())
        names = [n for n in args.sets.split(",") if n] or list(finished)
        for name in names:
            print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} set {name}", flush=True)
            evaluate_set(name, sets, out, args.config, args.set)
            render(out, Path(args.docs))
    render(out, Path(args.docs))


if __name__ == "__main__":
    main()
