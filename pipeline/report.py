"""results.json (DESIGN.md schema) and report.md with the cross-architecture table and a bar chart."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

RUN_KEYS = (
    "student",
    "mode",
    "loss",
    "teacher_id",
    "teacher_epoch",
    "layer",
    "view_policy",
    "views",
    "seed",
    "epochs",
    "lr",
    "test_acc",
    "train_seconds",
)


def arm(entry: dict[str, Any]) -> str:
    """A report column: the mode, with the view policy for modes that use teacher features ("elf (replay)")."""
    policy = entry.get("view_policy")
    return entry["mode"] if policy is None else f"{entry['mode']} ({policy})"


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and population std (np.std, as the reference reports) of test accuracy per student, mode, view policy."""
    groups: dict[tuple[str, str, str | None], list[float]] = defaultdict(list)
    for run in runs:
        groups[(run["student"], run["mode"], run.get("view_policy"))].append(run["test_acc"])
    return [
        {
            "student": s,
            "mode": m,
            "view_policy": p,
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
            "n": len(v),
        }
        for (s, m, p), v in groups.items()
    ]


def build_results(
    version: str, config: dict[str, Any], synthetic: dict[str, Any], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    runs = [{k: run.get(k) for k in RUN_KEYS} for run in runs]
    return {
        "elfdd_version": version,
        "config": config,
        "synthetic": synthetic,
        "runs": runs,
        "summary": summarize(runs),
    }


def paired_gains(
    runs: list[dict[str, Any]], column: str, baseline: str = "baseline"
) -> dict[str, tuple[float, float, int]]:
    """Per student: mean and std of (column - baseline) over the seeds both have; columns as :func:`arm`."""
    by_key = {(r["student"], arm(r), r["seed"]): r["test_acc"] for r in runs}
    gains: dict[str, list[float]] = defaultdict(list)
    for (student, m, seed), acc in by_key.items():
        if m == column and (student, baseline, seed) in by_key:
            gains[student].append(acc - by_key[(student, baseline, seed)])
    return {s: (float(np.mean(g)), float(np.std(g)), len(g)) for s, g in gains.items()}


def _grid(results: dict[str, Any]) -> tuple[dict[tuple[str, str], dict], list[str], list[str]]:
    """Summary entries by (student, column), the students and the columns, in the order the runs came."""
    summary = {(s["student"], arm(s)): s for s in results["summary"]}
    students = list(dict.fromkeys(r["student"] for r in results["runs"]))
    return summary, students, list(dict.fromkeys(arm(r) for r in results["runs"]))


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def render_markdown(results: dict[str, Any], plot_name: str | None) -> str:
    summary, students, modes = _grid(results)
    cfg, syn = results["config"], results["synthetic"]
    lines = [
        "# elfdd cross-architecture report",
        "",
        f"Synthetic set: {syn['method'].upper()}, IPC {syn['ipc']}, sha256 `{syn['sha256'][:16]}`; "
        f"dataset {cfg['data']['name']}; distilled with {cfg['distill']['arch']}.",
        f"Teacher `{cfg['teacher']['id']}` ({cfg['teacher']['arch']}); features from epoch {results.get('teacher_epoch')} "
        f"at layer `{results.get('layer')}`. Students trained {cfg['students']['epochs']} epochs, "
        f"feature loss {cfg['students']['feature_loss']}, λ_front {cfg['students']['lambda_front']}, λ_rear {cfg['students']['lambda_rear']}.",
        "",
        "Test accuracy (%) on the real test split, mean ± std over seeds (np.std); gain = paired difference per seed. "
        "View policy clean: the teacher feature of the un-augmented image (the reference); replay: the feature of "
        "exactly the augmented view the student sees.",
        "",
    ]
    header = ["student", *modes] + [f"gain {m}" for m in modes if m != "baseline" and "baseline" in modes]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    gains = {m: paired_gains(results["runs"], m) for m in modes if m != "baseline" and "baseline" in modes}
    for student in students:
        row = [student]
        for m in modes:
            s = summary.get((student, m))
            row.append(f"{_pct(s['mean'], s['std'])} (n={s['n']})" if s else "–")
        for per_student in gains.values():
            g = per_student.get(student)
            row.append(f"{100 * g[0]:+.2f} ± {100 * g[1]:.2f}" if g else "–")
        lines.append("| " + " | ".join(row) + " |")
    if plot_name:
        lines += ["", f"![test accuracy by student and mode](plots/{plot_name})"]
    seconds = sum(r["train_seconds"] for r in results["runs"])
    lines += ["", f"{len(results['runs'])} student runs, {seconds:.0f} s of student training in total.", ""]
    return "\n".join(lines)


def plot_accuracy(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, students, modes = _grid(results)
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(1.6 * len(students) + 2, 3.6))
    for i, mode in enumerate(modes):
        means = [100 * summary[(s, mode)]["mean"] if (s, mode) in summary else 0 for s in students]
        stds = [100 * summary[(s, mode)]["std"] if (s, mode) in summary else 0 for s in students]
        ax.bar(
            np.arange(len(students)) + (i - (len(modes) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            label=mode,
        )
    ax.set_xticks(np.arange(len(students)), students)
    ax.set_ylabel("test accuracy (%)")
    low = min((100 * s["mean"] for s in results["summary"]), default=0)
    ax.set_ylim(max(0, low - 10), 100)
    ax.set_title("Students trained on the synthetic set: baseline vs ELF")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
