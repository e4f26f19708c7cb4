"""The cross-architecture study at convergence (src/elfdd/configs/study.yaml): one store, then arms trained from it; writes
docs/results.md (headline table, goal check, ablations, lambda grid) and docs/results.json (every arm's raw runs).

    python bench/cross_arch.py [--config study] [--out runs/study] [--arms elfdd,reference,...]
                               [--docs docs] [--set KEY=VALUE ...]

Arms (each a set of `students.*` overrides; the study's baselines come with `elfdd`):

    elfdd            the study config as it is: width-matched teachers, per-image replay views, rear path through
                     a ReLU, splits by shape, gradient clip 10 (with the baselines)
    reference        ELF exactly as the reference: one 128-wide teacher for every student (adapters where shapes
                     differ), clean features, raw CE, lambda 1/1, linear rear adapters, default splits, no clipping
    adapted_teacher  ResNet18, VGG11 learn from the 128-wide teacher through 1x1 adapters (ablation of item 1)
    teacher_last     ResNet18, VGG11, AlexNet with the last (decayed) checkpoint instead of the constant phase's end
                     (item 2; AlexNet too: the goal's three students with the best teacher measured)
    views_1/8/32     ResNet18, VGG11 replaying only the store's first V views (elfdd: all 64; item 3)
    online           ResNet18, VGG11 with the teacher run on every augmented batch (the yardstick for the views)
    rear_linear      ResNet18, VGG11 with the rear path of linear adapters (item 4)
    adapted_rear_linear  the same with the 128-wide teacher through 1x1 adapters (compare adapted_teacher)
    epochs_1000      VGG11, AlexNet, ResNet18, ConvNet trained 1000 epochs (lr x0.1 after 500, as the reference's
                     evaluation), baselines and ELF: whether the 300-epoch gains hold once the baselines train longer
    lambda           AlexNet (the cheapest of the goal's three students), lambda_front x lambda_rear in {0.3, 1, 3}^2

Every finished cell is kept (an interrupted study continues where it stopped; run it with nohup). Prints
`gain ARM STUDENT MEAN ± STD (n=N)` per arm and student and the goal lines `goal ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from arms import build_store, train_arm
from sections import write_section

from elfdd.pipeline import stages
from elfdd.pipeline.report import baselines, converged, gain_text, markdown_table, mean_accuracy, paired_gain
from elfdd.pipeline.training import describe_machine

PAIR = "students.archs=[resnet18,vgg11]"
LAMBDA_STUDENT = "alexnet"  # the lambda grid's student
ELF_ONLY = "students.loss_modes=[front_rear_task]"
# ResNet18 and VGG11 learning from the 128-wide teacher through 1x1 adapters
ADAPTED_TEACHER = "students.teacher={resnet18: convnet, vgg11: convnet}"
REFERENCE_TEACHER = (
    "students.teacher={convnet: convnet, resnet18: convnet, vgg11: convnet, alexnet: convnet, lenet: convnet,"
    " mlp: convnet, tv_resnet18: convnet}"
)
ARMS: dict[str, list[str]] = {
    "elfdd": [],
    "reference": [
        ELF_ONLY,
        REFERENCE_TEACHER,
        "students.view_policies=[clean]",
        "students.rear_path=linear",
        "students.split={tv_resnet18: layer4_0}",
        "students.grad_clip=null",
        "students.rear_bn_stats=all",
        "students.vector_front_scale=1",
    ],
    "adapted_teacher": [PAIR, ELF_ONLY, ADAPTED_TEACHER],
    # null: the last extracted epoch
    "teacher_last": ["students.archs=[resnet18,vgg11,alexnet]", ELF_ONLY, "students.teacher_epochs=null"],
    "views_1": [PAIR, ELF_ONLY, "students.max_views=1"],
    "views_8": [PAIR, ELF_ONLY, "students.max_views=8"],
    "views_32": [PAIR, ELF_ONLY, "students.max_views=32"],
    "online": [PAIR, ELF_ONLY, "students.view_policies=[online]"],
    "rear_linear": [PAIR, ELF_ONLY, "students.rear_path=linear"],
    # the rear path where it can matter: a matched teacher's feature has passed a ReLU already (rear_linear is
    # elfdd's cells again), the 1x1 adapters from the 128-wide teacher have not
    "adapted_rear_linear": [PAIR, ELF_ONLY, ADAPTED_TEACHER, "students.rear_path=linear"],
    # the batch-norm student (tv_resnet18) with its running statistics also fed by the rear pass, as the reference
    "rear_bn_all": ["students.archs=[tv_resnet18]", ELF_ONLY, "students.rear_bn_stats=all"],
    # the student without a spatial stage (the MLP) with its front loss at full weight, as the others
    "vector_front_1": ["students.archs=[mlp]", ELF_ONLY, "students.vector_front_scale=1"],
    # ConvNet too: the distillation architecture's own gain at convergence, what the other students are held to
    "epochs_1000": ["students.archs=[vgg11,alexnet,resnet18,convnet]", "students.epochs=1000"],
    "lambda": [
        f"students.archs=[{LAMBDA_STUDENT}]",
        ELF_ONLY,
        "students.lambda_front=[1,0.3,3]",
        "students.lambda_rear=[1,0.3,3]",
    ],
}
ABLATED = ("resnet18", "vgg11", "alexnet", "tv_resnet18", "mlp")  # the students of the ablation table
HARD = ("resnet18", "vgg11", "alexnet")  # the goal's students: +4 points on their mean
CONVERGENCE = "epochs_1000"  # the arm with its own (longer-trained) baselines


def own_baselines(results: dict, paired: dict) -> dict:
    """What an arm's gains pair with: its own baselines where it trains them (e.g. with more epochs), else
    ``paired`` (the elfdd arm's)."""
    return baselines(results) or paired


def elf_runs(results: dict) -> list[dict]:
    return [r for r in results["runs"] if r["mode"] != "baseline"]


def gain_of(results: dict, student: str, paired: dict, **axes) -> tuple[float, float, int]:
    runs = [
        r
        for r in elf_runs(results)
        if r["student"] == student and all(r["loss"].get(k) == v for k, v in axes.items())
    ]
    return paired_gain(runs, paired)


def accuracy_text(runs: list[dict]) -> str:
    accuracy = mean_accuracy(runs)
    diverged = sum(not converged(r) for r in runs)
    if accuracy is None:
        return f"diverged ({diverged})" if runs else "–"
    text = f"{100 * accuracy[0]:.2f} ± {100 * accuracy[1]:.2f}"
    return text + (f", {diverged} diverged" if diverged else "")


def hard_goal(gains: list[float], at: str = "", compared: str = "") -> str:
    """The goal line of the mean gain (fractions) over the HARD students: +4 points or more."""
    mean = 100 * float(np.mean(gains))
    return f"goal mean_gain_resnet18_vgg11_alexnet{at} {mean:+.2f} points ({compared}goal >= +4): " + (
        "met" if mean >= 4 else "missed"
    )


def headline(arms: dict[str, dict], paired: dict) -> tuple[list[str], list[str]]:
    """The headline table (baseline, reference ELF, elfdd ELF per student) and the goal lines."""
    base = arms["elfdd"]
    students = list(dict.fromkeys(r["student"] for r in base["runs"]))
    columns = [a for a in ("reference", "elfdd") if a in arms]
    rows, gains = [], {a: {} for a in columns}
    for student in students:
        row = [
            student,
            accuracy_text([r for r in base["runs"] if r["student"] == student and r["mode"] == "baseline"]),
        ]
        for label in columns:
            runs = [r for r in elf_runs(arms[label]) if r["student"] == student]
            gains[label][student] = paired_gain(runs, paired)
            teacher = ", ".join(sorted({r["teacher_id"] for r in runs})) or "–"
            row.append(f"{accuracy_text(runs)} ({gain_text(gains[label][student])}; {teacher})")
        rows.append(row)
    lines = markdown_table(["student", "baseline", *(f"ELF {a} (gain; teacher)" for a in columns)], rows)
    goals = []
    if "elfdd" in gains:
        hard = [gains["elfdd"][s][0] for s in HARD if gains["elfdd"].get(s, (0, 0, 0))[2]]
        if hard:
            goals.append(hard_goal(hard))
        worst = min(((100 * g[0], s) for s, g in gains["elfdd"].items() if g[2]), default=None)
        if worst:
            goals.append(
                f"goal worst_gain {worst[0]:+.2f} points ({worst[1]}; goal >= -0.5): {'met' if worst[0] >= -0.5 else 'missed'}"
            )
    if len(columns) == 2:
        shared = [s for s in students if gains["elfdd"][s][2] and gains["reference"][s][2]]
        if shared:
            ours = 100 * float(np.mean([gains["elfdd"][s][0] for s in shared]))
            ref = 100 * float(np.mean([gains["reference"][s][0] for s in shared]))
            goals.append(
                f"goal elfdd_over_reference mean gain {ours:+.2f} vs {ref:+.2f} points: {'met' if ours > ref else 'missed'}"
            )
    return lines, goals


def ablations(arms: dict[str, dict], paired: dict) -> list[str]:
    """ResNet18 and VGG11 (and AlexNet, tv_resnet18, the batch-norm student, and the MLP) under each ablation arm
    next to elfdd's own cells (accuracy and paired gain; – where an arm has no cell of the student)."""
    labels = [a for a in ARMS if a not in ("reference", "lambda", CONVERGENCE) and a in arms]
    if len(labels) < 2:
        return []
    rows = []
    for student in ABLATED:
        row = [student]
        for label in labels:
            runs = [r for r in elf_runs(arms[label]) if r["student"] == student]
            row.append(f"{accuracy_text(runs)} ({gain_text(paired_gain(runs, paired))})" if runs else "–")
        rows.append(row)
    return [
        "",
        "## Ablations (ResNet18, VGG11; AlexNet, tv_resnet18, MLP)",
        "",
        *markdown_table(["student", *labels], rows),
    ]


def convergence_table(arms: dict[str, dict], paired: dict) -> list[str]:
    """Baseline, ELF and the paired gain of each student at the study's epochs and in the longer-trained arm (its
    gains paired with its own baselines)."""
    if CONVERGENCE not in arms:
        return []
    longer = arms[CONVERGENCE]
    rows, hard = [], ([], [])  # the goal students' gains at the study's epochs and the longer arm's
    for student in dict.fromkeys(r["student"] for r in longer["runs"]):
        row = [student]
        for results, hard_gains in zip((arms["elfdd"], longer), hard, strict=True):
            elf = [r for r in elf_runs(results) if r["student"] == student]
            gain = paired_gain(elf, own_baselines(results, paired))
            if student in HARD and gain[2]:
                hard_gains.append(gain[0])
            row += [
                accuracy_text(
                    [r for r in results["runs"] if r["student"] == student and r["mode"] == "baseline"]
                ),
                accuracy_text(elf),
                gain_text(gain),
            ]
        rows.append(row)
    short, long = (max(r["epochs"] for r in a["runs"]) for a in (arms["elfdd"], longer))
    header = [f"{label} {e}" for e in (short, long) for label in ("baseline", "ELF", "gain")]
    goal = []
    if all(len(gains) == len(HARD) for gains in hard):
        short_mean = 100 * float(np.mean(hard[0]))
        goal = ["", "- " + hard_goal(hard[1], f" at {long} epochs", f"at {short}: {short_mean:+.2f}; ")]
    return [
        "",
        f"## Convergence: {short} vs {long} epochs (each gain paired with the same epochs' baseline)",
        "",
        *markdown_table(["student", *header], rows),
        *goal,
    ]


def lambda_table(arms: dict[str, dict], paired: dict) -> list[str]:
    if "lambda" not in arms:
        return []
    runs = elf_runs(arms["lambda"])
    fronts = sorted({r["loss"]["lambda_front"] for r in runs})
    rears = sorted({r["loss"]["lambda_rear"] for r in runs})
    rows = [
        [
            f"{f:g}",
            *(
                gain_text(gain_of(arms["lambda"], LAMBDA_STUDENT, paired, lambda_front=f, lambda_rear=r))
                for r in rears
            ),
        ]
        for f in fronts
    ]
    return [
        "",
        f"## λ_front x λ_rear ({LAMBDA_STUDENT}, paired gain)",
        "",
        *markdown_table(["λ_front \\ λ_rear", *map(str, rears)], rows),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="study")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--docs", default="docs", help="where results.md and results.json go")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="for the store and every arm"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only write docs/results.{md,json} from the arms' kept results.json (nothing is trained)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("elfdd").setLevel(logging.INFO)  # the stages' progress lines
    labels = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(labels) - set(ARMS))
    if unknown or "elfdd" not in labels:
        raise SystemExit(
            f"--arms: unknown {unknown}" if unknown else "--arms must include elfdd (its baselines)"
        )
    out = Path(args.out)
    if args.render:
        render(out, labels, Path(args.docs))
        return
    started = time.perf_counter()
    base, seconds = build_store(out / "store", args.config, args.set)
    done: list[stages.Run] = []
    arms: dict[str, dict] = {}
    for label in labels:
        t0 = time.perf_counter()
        run_dir = out / label
        run_dir.mkdir(parents=True, exist_ok=True)
        link = run_dir / "checkpoints"  # the online arm runs the store's teachers
        if not link.exists():
            link.symlink_to(base.dir.checkpoints.resolve(), target_is_directory=True)
        run = train_arm(run_dir, args.config, base.dir.store, label, [*args.set, *ARMS[label]], done)
        done.append(run)
        arms[label] = json.loads(run.dir.results.read_text())
        seconds[label] = time.perf_counter() - t0
        seconds["total"] = time.perf_counter() - started
        # after every arm: a long study's results land as they come
        summarise(Path(args.docs), arms, seconds, base)


def render(out: Path, labels: list[str], docs: Path) -> None:
    """docs/results.{md,json} from the results.json each arm kept (its records were made under the keys of their
    day; reading them needs no key)."""
    arms = {label: json.loads((out / label / "results.json").read_text()) for label in labels}
    kept = (
        json.loads((docs / "results.json").read_text()).get("wall_seconds", {})
        if (docs / "results.json").exists()
        else {}
    )
    summarise(docs, arms, kept, stages.open_run(out / "store"))


def summarise(docs: Path, arms: dict[str, dict], seconds: dict[str, float], base: stages.Run) -> None:
    """Print the gains and goal lines of the arms finished so far and write docs/results.{md,json} from them."""
    paired = baselines(arms["elfdd"])
    for label, results in arms.items():
        pairs = own_baselines(results, paired)
        for student in dict.fromkeys(r["student"] for r in elf_runs(results)):
            gain = paired_gain([r for r in elf_runs(results) if r["student"] == student], pairs)
            print(f"gain {label} {student} {gain_text(gain)} points (n={gain[2]})")
    lines, goals = headline(arms, paired)
    print("\n".join(goals))
    write_docs(docs, arms, seconds, lines, goals, base, paired)


def teacher_lines(base: stages.Run, config) -> list[str]:
    rows = []
    for teacher in config.teacher_pool:
        manifest = json.loads((base.dir.teacher_dir(teacher.id) / "manifest.json").read_text())
        history = ", ".join(f"{h['epoch']}: {100 * h['test_acc']:.2f}" for h in manifest["history"])
        rows.append(
            [
                teacher.id,
                teacher.arch,
                json.dumps(teacher.arch_kwargs),
                str(manifest["constant_phase_end"]),
                history,
            ]
        )
    return markdown_table(
        ["teacher", "arch", "arch_kwargs", "constant lr until epoch", "test accuracy % per epoch"], rows
    )


def write_docs(
    docs: Path,
    arms: dict,
    seconds: dict,
    lines: list[str],
    goals: list[str],
    base: stages.Run,
    paired: dict,
) -> None:
    config = base.config
    docs.mkdir(parents=True, exist_ok=True)
    text = [
        "# elfdd cross-architecture study",
        "",
        f"Rendered on {date.today()}. Command: `python {' '.join(sys.argv)}` on {describe_machine(base.device)}, torch {torch.__version__}.",
        "Wall time of this invocation (finished cells are kept, so a resumed study's is short): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + ". Training time of the cells (sum of their `train_seconds`, over every session that trained them): "
        + ", ".join(
            f"{label} {sum(r['train_seconds'] for r in arm['runs']) / 60:.0f} min"
            for label, arm in arms.items()
        )
        + ".",
        "",
        f"Synthetic set: {config.distill.method.upper()} IPC {config.distill.ipc}, {config.distill.iterations} "
        f"iterations, distilled with {config.distill.arch}; students {config.students.epochs} epochs, seeds "
        f"{config.students.seeds}, test set {config.data.test_subset or 'full'}. Accuracy % mean ± std over seeds "
        "(np.std); gain: paired by seed against the student's baseline.",
        "",
        "## Teachers",
        "",
        *teacher_lines(base, config),
        "",
        "## Baseline vs ELF",
        "",
        *lines,
        "",
        *(f"- {g}" for g in goals),
        *ablations(arms, paired),
        *convergence_table(arms, paired),
        *lambda_table(arms, paired),
        "",
    ]
    write_section(docs / "results.md", "cross_arch", "bench/cross_arch.py", text)
    (docs / "results.json").write_text(
        json.dumps(
            {"study": config.model_dump(mode="json"), "wall_seconds": seconds, "goals": goals, "arms": arms},
            indent=1,
        )
    )
    print(f"# wrote {docs / 'results.md'} and {docs / 'results.json'}")


if __name__ == "__main__":
    main()
