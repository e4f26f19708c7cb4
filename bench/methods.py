"""The two remedies side by side (issue 35): every set distilled by bench/sets.py (DM, DSA, MTT, the random-subset
yardstick; MetaDD when distilled) evaluated the same way: the study's two width-matched teachers (its kept
checkpoints, imported: the teachers do not depend on the set), one store per set, and per set ConvNet, ResNet18,
VGG11, AlexNet and MLP x baseline and ELF (elfdd's defaults of src/elfdd/configs/study.yaml) x seeds 0-2 x 300 epochs on the
full test set.

    nohup .venv/bin/python bench/methods.py >> bench/methods/methods.log 2>&1 &     # resumable
    .venv/bin/python bench/methods.py --sets dm_ipc1 --set students.epochs=2      # a quick look
    .venv/bin/python bench/methods.py --render                                     # docs/results.md only

Each set's run directory is ``OUT/<set>/`` (its synthetic set copied from bench/sets/<set>/; no distillation
here). Every finished cell is kept (its record, keyed by its inputs), so a killed study continues where it
stopped; after each set its report is written and the cross-method section of docs/results.md is rendered again
from every set's results.json (per set: accuracy, paired gain, IOR and architecture gap per student, and each
student's best arm; then one summary row per set and its plot, docs/methods.png).
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
from sections import write_section

from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.report import baselines, converged, gain_text, markdown_table, mean_accuracy, paired_gain
from elfdd.pipeline.report.scores import architecture_gaps, improvement_over_random
from elfdd.pipeline.synthetic import load_synthetic

STUDY = Path("bench/study/store/checkpoints")
STUDENTS = ["convnet", "resnet18", "vgg11", "alexnet", "mlp"]
# The study's own set (src/elfdd/configs/study.yaml: DM IPC 10, 1000 iterations), taken from its store rather than distilled
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
    """The study's two teachers, imported from its checkpoints at epochs 5 and 10 (src/elfdd/configs/study.yaml)."""

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


ARMS = ("baseline", "elf", "kd", "elf_kd")  # the modes of the study's grids (kd, elf_kd: the soft-label sets)
HARD = ("resnet18", "vgg11", "alexnet")  # the cross-architecture students the summary averages


def accuracy(runs: list[dict]) -> str:
    held = mean_accuracy(runs)
    if held is None:
        return "–"
    return (
        f"{100 * held[0]:.2f}" + ("" if len(runs) == 1 else f" ± {100 * held[1]:.2f}") + f" (n={len(runs)})"
    )


def by_mode(results: dict) -> dict[str, dict[str, list[dict]]]:
    """student -> mode -> runs (every run of these grids is at its reference cell)."""
    table: dict[str, dict[str, list[dict]]] = {}
    for r in results["runs"]:
        table.setdefault(r["student"], {}).setdefault(r["mode"], []).append(r)
    return table


def score_text(entries: list[dict], student: str, mode: str) -> str:
    """A score of pipeline/report/scores.py (points) for the student under the mode (any view policy)."""
    hit = [e for e in entries if e["student"] == student and e["arm"].split(" (")[0] == mode]
    return gain_text((hit[0]["mean"], hit[0]["std"], hit[0]["n"])) if hit else "–"


def best_arm_lines(table: dict[str, dict[str, list[dict]]], gaps: list[dict], modes: list[str]) -> list[str]:
    """Per cross-architecture student, its best arm (the highest mean accuracy) and its architecture gap under it:
    by how much it misses the ConvNet's own baseline on this set (the moonshot of issue 34: gap <= 0)."""
    lines = []
    for student, per_mode in table.items():
        held = {m: mean_accuracy(per_mode.get(m, [])) for m in modes}
        held = {m: v for m, v in held.items() if v is not None}
        if student == "convnet" or not held:
            continue
        best = max(held, key=lambda m: held[m][0])
        hit = [e for e in gaps if e["student"] == student and e["arm"].split(" (")[0] == best]
        if hit:
            gap = hit[0]["mean"]
            verdict = "reaches the ConvNet's baseline" if gap <= 0 else f"misses it by {100 * gap:.2f} points"
            lines.append(f"- {student}: best arm {best}, gap {score_text(gaps, student, best)}: {verdict}")
    return lines


def soft_label_lines(results: dict, table: dict[str, dict[str, list[dict]]]) -> list[str]:
    """Do the cached soft labels add to ELF? elf_kd minus elf, paired by seed, per student and on the three."""
    if not any("elf_kd" in per_mode for per_mode in table.values()):
        return []
    over_elf = accuracy_by_seed(results, "elf")
    per_student = ", ".join(
        f"{student} {gain_text(paired_gain(per_mode.get('elf_kd', []), over_elf))}"
        for student, per_mode in table.items()
    )
    three = gain_text(mean_gain(results, "elf_kd", over="elf"))
    return [
        f"- soft labels over ELF (elf_kd - elf, paired by seed): {per_student}; mean of the three {three}"
    ]


def seed_means(results: dict, mode: str, over: str | None = None) -> dict[int, float]:
    """Per seed, the mean over ResNet18, VGG11 and AlexNet of the accuracy under ``mode`` (minus ``over``'s, paired
    by student and seed, where given); only seeds where all three converged."""
    paired = accuracy_by_seed(results, over) if over is not None else {}
    per_seed: dict[int, list[float]] = {}
    for r in results["runs"]:
        key = (r["student"], r["seed"])
        if r["student"] not in HARD or r["mode"] != mode or not converged(r):
            continue
        if over is None or key in paired:
            per_seed.setdefault(r["seed"], []).append(r["test_acc"] - paired.get(key, 0.0))
    return {seed: float(np.mean(v)) for seed, v in per_seed.items() if len(v) == len(HARD)}


def spread(per_seed: dict[int, float]) -> tuple[float, float, int]:
    """Mean, np.std and count over the seeds."""
    values = list(per_seed.values())
    return (float(np.mean(values)), float(np.std(values)), len(values)) if values else (float("nan"), 0.0, 0)


def between(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    """``a - b`` per seed, for the seeds both have: two sets compared under the same student initialisations."""
    return {seed: a[seed] - b[seed] for seed in a if seed in b}


def mean_over_students(results: dict, mode: str) -> tuple[float, float, int]:
    """Per seed the mean accuracy of ResNet18, VGG11 and AlexNet under ``mode``; mean and np.std over the seeds."""
    return spread(seed_means(results, mode))


def accuracy_by_seed(results: dict, mode: str) -> dict[tuple[str, int], float]:
    """Test accuracy by (student, seed) of the converged runs under ``mode`` (what paired_gain pairs with)."""
    return {
        (r["student"], r["seed"]): r["test_acc"]
        for r in results["runs"]
        if r["mode"] == mode and converged(r)
    }


def mean_gain(results: dict, mode: str, over: str = "baseline") -> tuple[float, float, int]:
    """Per seed the mean over ResNet18, VGG11 and AlexNet of (mode - over); mean and np.std over the seeds."""
    return spread(seed_means(results, mode, over))


def verdict(difference: tuple[float, float, int]) -> str:
    """Yes where the difference minus its std is above 0; no where it plus its std is below; else seed noise."""
    if difference[0] - difference[1] > 0:
        return "yes"
    return "no, the reverse" if difference[0] + difference[1] < 0 else "no: within seed noise"


def answer_lines(finished: dict[str, dict]) -> list[str]:
    """The questions of issue 35, answered from the finished sets (a question whose sets are missing is left out)."""
    gains = {name: seed_means(results, "elf", over="baseline") for name, results in finished.items()}
    not_lifted = [name for name, g in gains.items() if verdict(spread(g)) != "yes"]
    lines = [
        "### What the numbers say",
        "",
        "On ResNet18, VGG11 and AlexNet: per seed the mean of the three, then mean ± np.std over seeds; two sets "
        "are compared seed by seed (the same student initialisations).",
        "",
        f"- Does ELF lift the three on every set? {'no' if not_lifted else 'yes'}: its gain minus its std is above "
        f"0 on {len(gains) - len(not_lifted)} of {len(gains)} sets"
        + (f" (not on {', '.join(not_lifted)})" if not_lifted else "")
        + ".",
    ]
    for mtt in sorted(n for n in finished if n.startswith("mtt_ipc")):
        dm = mtt.replace("mtt_", "dm_", 1)
        if dm in finished:
            difference = spread(between(gains[mtt], gains[dm]))
            lines.append(
                f"- Is ELF's gain larger on {mtt} than on {dm}? {verdict(difference)}: "
                f"{gain_text(spread(gains[mtt]))} vs {gain_text(spread(gains[dm]))} points, difference "
                f"{gain_text(difference)}."
            )
    for name in sorted(n for n in finished if n.endswith("_metadd")):
        base = name.removesuffix("_metadd")
        if base not in finished:
            continue
        with_metadd, without = finished[name], finished[base]
        lift = spread(between(seed_means(with_metadd, "baseline"), seed_means(without, "baseline")))
        over_elf = spread(between(seed_means(with_metadd, "elf"), seed_means(without, "elf")))
        over_metadd = spread(gains[name])
        lines += [
            f"- Does MetaDD lift the cross-architecture baseline ({name} vs {base})? {verdict(lift)}: "
            f"{gain_text(lift)} points.",
            f"- Does MetaDD + ELF beat each alone? over ELF alone ({base} under ELF): {verdict(over_elf)}, "
            f"{gain_text(over_elf)}; over MetaDD alone ({name}'s baseline): {verdict(over_metadd)}, "
            f"{gain_text(over_metadd)} points.",
        ]
    return [*lines, ""]


def pct_text(value: tuple[float, float, int]) -> str:
    return "–" if not value[2] else f"{100 * value[0]:.2f} ± {100 * value[1]:.2f}"


def recorded_sets(sets: Path) -> dict[str, dict]:
    """bench/sets.py's record of the sets it made (sets.json): budget, time, published figure; {} before any."""
    return json.loads((sets / "sets.json").read_text()) if (sets / "sets.json").exists() else {}


def budget_lines(names: list[str], recorded: dict[str, dict]) -> list[str]:
    """Each set's distillation budget and time beside its published ConvNet figure (bench/sets.py's sets.json)."""
    rows = []
    for name in names:
        if name == STUDY_SET:
            extra = load_synthetic(STUDY.parent / "synthetic.pt").extra
            rows.append(
                [
                    name,
                    "dm, IPC 10",
                    str(extra["iterations"]),
                    f"{extra['seconds']:.0f}",
                    "bench/cross_arch.py's run",
                    "–",
                ]
            )
        elif name in recorded:
            r = recorded[name]
            given = [
                o
                for o in r["overrides"]
                if o.startswith(("distill.mtt.", "distill.metadd.", "distill.lr_img"))
            ]
            published = "–" if r["reference_convnet_acc"] is None else f"{r['reference_convnet_acc']}"
            rows.append(
                [
                    name,
                    ", ".join([f"{r['method']}, IPC {r['ipc']}", *given]),
                    "–" if r["method"] == "random" else str(r["iterations"]),
                    "–" if r["distill_seconds_recorded"] is None else f"{r['distill_seconds_recorded']:.0f}",
                    r["machine"],
                    f"{published} ({r['reference']})",
                ]
            )
    header = ["set", "distillation", "iterations", "seconds", "machine", "published ConvNet % (source)"]
    return ["### The sets", "", *markdown_table(header, rows), ""]


def published_lines(finished: dict[str, dict], recorded: dict[str, dict]) -> list[str]:
    """Each set's ConvNet baseline here beside its published Fashion-MNIST figure, where one exists."""
    lines = []
    for name, results in finished.items():
        published = recorded.get(name, {}).get("reference_convnet_acc")
        here = mean_accuracy(by_mode(results).get("convnet", {}).get("baseline", []))
        if published is not None and here is not None:
            lines.append(
                f"- {name}: the ConvNet reaches {100 * here[0]:.2f} ± {100 * here[1]:.2f} % here, {published} % "
                f"published ({recorded[name]['reference']}): {100 * here[0] - published:+.2f} points"
            )
    return [*lines, ""] if lines else []


def render(out: Path, docs: Path, sets: Path) -> None:
    """The cross-method section of docs/results.md (and docs/methods.png) from every finished set's results.json."""
    finished = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/results.json"))}
    lines = [
        "## Cross-method study: ELF on DM, DSA, MTT, MetaDD and random-subset sets",
        "",
        "Rendered by `bench/methods.py` from `bench/methods/<set>/results.json` (every set evaluated by the same "
        "students from the study's two teachers; 300 epochs, 3 seeds, the full test set). Accuracy in %, mean ± "
        "np.std over seeds; gains are paired by seed (the arm minus the baseline, points). IOR (DD-Ranking's "
        "improvement over random): the set minus the random real subset of the same IPC (`random_ipc<N>`) under "
        "the same student, arm and seed; gap (the architecture gap): the ConvNet's baseline on the set minus the "
        "student under the arm (docs/design.md; pipeline/report/scores.py computes both).",
        "",
    ]
    recorded = recorded_sets(sets)
    lines += budget_lines(list(finished), recorded)
    lines += published_lines(finished, recorded)
    summary = []
    for name, results in finished.items():
        table = by_mode(results)
        modes = [m for m in ARMS if any(m in per_mode for per_mode in table.values())]
        yardstick = finished.get(f"random_ipc{results['synthetic']['ipc']}")
        ior = improvement_over_random(results, yardstick) if yardstick and yardstick is not results else []
        gaps = architecture_gaps(results)
        paired = baselines(results)
        rows = []
        for student, per_mode in table.items():
            row = [student, *(accuracy(per_mode.get(m, [])) for m in modes)]
            row += [gain_text(paired_gain(per_mode.get(m, []), paired)) for m in modes if m != "baseline"]
            row += [score_text(ior, student, m) for m in modes] + [
                score_text(gaps, student, m) for m in modes
            ]
            rows.append(row)
        epochs = sorted({r["epochs"] for r in results["runs"]})
        lines += [f"### {name} (students {', '.join(map(str, epochs))} epochs)", ""]
        header = ["student", *(f"{m} %" for m in modes), *(f"{m} gain" for m in modes if m != "baseline")]
        header += [f"IOR {m}" for m in modes] + [f"gap {m}" for m in modes]
        lines += markdown_table(header, rows)
        lines += ["", *best_arm_lines(table, gaps, modes), *soft_label_lines(results, table), ""]
        convnet = mean_accuracy(table.get("convnet", {}).get("baseline", []))
        summary.append(
            (
                name,
                convnet,
                {m: mean_over_students(results, m) for m in ("baseline", "elf", "elf_kd")},
                mean_gain(results, "elf"),
            )
        )
    if summary:
        lines += [
            "### Summary: ConvNet, and the mean of ResNet18, VGG11 and AlexNet under each arm",
            "",
            "Mean ± np.std over seeds of the per-seed mean over the three students; ELF's gain paired by seed.",
            "",
        ]
        lines += markdown_table(
            [
                "set",
                "ConvNet baseline %",
                "mean baseline %",
                "mean ELF %",
                "mean elf_kd %",
                "ELF gain (points)",
            ],
            [
                [
                    name,
                    "–" if convnet is None else f"{100 * convnet[0]:.2f} ± {100 * convnet[1]:.2f}",
                    *(pct_text(means[m]) for m in ("baseline", "elf", "elf_kd")),
                    gain_text(gain),
                ]
                for name, convnet, means, gain in summary
            ],
        )
        lines += ["", "![summary](methods.png)", "", *answer_lines(finished)]
        plot_summary(summary, docs / "methods.png")
    write_section(docs / "results.md", "cross_method", "bench/methods.py", lines)


def plot_summary(summary: list, path: Path) -> None:
    """The summary table as grouped bars: per set, the ConvNet's baseline and the three students' mean per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {"ConvNet baseline": [c[0] if c else np.nan for _, c, _, _ in summary]}
    for mode in ("baseline", "elf", "elf_kd"):
        series[f"mean {mode}"] = [m[mode][0] if m[mode][2] else np.nan for _, _, m, _ in summary]
    fig, ax = plt.subplots(figsize=(1.4 * len(summary) + 3, 3.6))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        x = np.arange(len(summary)) + (i - (len(series) - 1) / 2) * width
        ax.bar(x, 100 * np.array(values), width, label=label)
    ax.set_xticks(np.arange(len(summary)), [name for name, *_ in summary], rotation=20, fontsize=8)
    ax.set_ylim(40, 100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title("ConvNet vs ResNet18/VGG11/AlexNet (mean) per set and arm")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets-dir", default="bench/sets", help="where bench/sets.py put the sets")
    parser.add_argument("--sets", default="", help="comma-separated set names (default: every finished set)")
    parser.add_argument("--out", default="bench/methods")
    parser.add_argument("--config", default="study")
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only render docs/results.md's cross-method section from kept results",
    )
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
            render(out, Path(args.docs), sets)
    render(out, Path(args.docs), sets)


if __name__ == "__main__":
    main()
