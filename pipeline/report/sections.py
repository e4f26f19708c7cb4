"""report.md's prose sections: the teachers and how each student was paired with one, the loss modes, the diverged
runs and the provenance of every feature array the runs read."""

from __future__ import annotations

from typing import Any

from .results import arm, at_reference, axes_of, baselines, converged, paired_gain, students_of
from .tables import cell_text, markdown_table


def teachers_text(cfg: dict[str, Any]) -> str:
    teachers = cfg.get("teachers") or [cfg["teacher"]]
    described = [
        f"`{t['id']}` ({t['arch']}{''.join(f', {k} {v}' for k, v in t.get('arch_kwargs', {}).items())})"
        for t in teachers
    ]
    return ("Teacher " if len(described) == 1 else "Teachers ") + ", ".join(described)


def reference_text(value: Any) -> str:
    """A reference value; one given per teacher shows once when all teachers share it."""
    if not isinstance(value, dict):
        return str(value)
    values = set(map(str, value.values()))
    return values.pop() if len(values) == 1 else ", ".join(f"{v} ({k})" for k, v in value.items())


def gap_section(results: dict[str, Any]) -> list[str]:
    """The architecture gap per student and arm (results.json ``scores.architecture_gap``)."""
    gaps = results.get("scores", {}).get("architecture_gap", [])
    if not gaps:
        return []
    arms = list(dict.fromkeys(g["arm"] for g in gaps))
    table = {(g["student"], g["arm"]): g for g in gaps}
    rows = [
        [student, *(_gap_text(table[(student, a)]) if (student, a) in table else "–" for a in arms)]
        for student in dict.fromkeys(g["student"] for g in gaps)
    ]
    return [
        "",
        "## Architecture gap",
        "",
        f"Points by which each student stays below the distillation architecture ({results['config']['distill']['arch']}"
        "'s baseline), paired by seed: 0 or below, the set no longer favours the architecture it was distilled with.",
        "",
        *markdown_table(["student", *arms], rows),
        "",
        "![architecture gap](plots/architecture_gap.png)",
    ]


def _gap_text(gap: dict[str, Any]) -> str:
    spread = f" ± {100 * gap['std']:.2f}" if gap["n"] > 1 else ""
    return f"{100 * gap['mean']:+.2f}{spread} (n={gap['n']})"


def pairing_section(results: dict[str, Any]) -> list[str]:
    """Which teacher and split each student learned from (pipeline/students/pairing.py), and whether adapters were needed."""
    seen: dict[tuple, None] = {}
    for run in results["runs"]:
        if run.get("teacher_id") is not None:
            seen[
                (
                    run["student"],
                    run["teacher_id"],
                    run.get("student_split"),
                    run.get("adapted"),
                    run.get("rear_relu"),
                )
            ] = None
    if not seen:
        return []
    yes_no = {True: "yes", False: "no", None: "–"}
    rows = [[s, t, str(split), yes_no[adapted], yes_no[relu]] for s, t, split, adapted, relu in seen]
    return [
        "",
        "## Teacher pairing",
        "",
        "Each student learns from the teacher whose feature has exactly the shape of one of its split points (its "
        "default split first); else one of the same spatial size (1x1 adapters), else through learned adapters "
        "(pipeline/students/pairing.py). Rear ReLU: the teacher feature reaches the student's rear through a ReLU, as its own "
        "front's output does.",
        "",
        *markdown_table(["student", "teacher", "split", "adapters", "rear ReLU"], rows),
    ]


def loss_mode_section(results: dict[str, Any]) -> list[str]:
    """The loss-mode ablation: every loss mode of the grid, other axes at the reference."""
    ref = results["reference"]
    runs = [r for r in results["runs"] if at_reference(r, ref)]
    modes = list(dict.fromkeys(axes_of(r)["loss_mode"] for r in runs))
    if len(modes) < 3:
        return []
    paired = baselines(results)
    rows = []
    for student in students_of(results):
        row = [student]
        for mode in modes:
            cell = [r for r in runs if r["student"] == student and axes_of(r)["loss_mode"] == mode]
            row.append(cell_text(cell, paired_gain(cell, paired)))
        rows.append(row)
    return [
        "## Loss-mode ablation",
        "",
        "Accuracy (gain over the baseline).",
        "",
        *markdown_table(["student", *modes], rows),
        "",
    ]


def diverged_section(results: dict[str, Any]) -> list[str]:
    """Every run recorded as diverged, with the loss term and epoch that went NaN/Inf (none: no section)."""
    runs = [r for r in results["runs"] if not converged(r)]
    if not runs:
        return []
    rows = [
        [
            r["student"],
            arm(r),
            str(r["seed"]),
            (r.get("diverged") or {}).get("term", "?"),
            str((r.get("diverged") or {}).get("epoch", "?")),
            str(r["lr"]),
        ]
        for r in runs
    ]
    return [
        f"## Diverged runs ({len(runs)} of {len(results['runs'])})",
        "",
        "A loss term became NaN or Inf; the run has no test accuracy and is left out of every mean and gain above.",
        "",
        *markdown_table(["student", "arm", "seed", "loss term", "epoch", "lr"], rows),
        "",
    ]


def provenance(results: dict[str, Any]) -> list[str]:
    seconds = sum(r["train_seconds"] for r in results["runs"])
    lines = [
        "## Provenance",
        "",
        f"{len(results['runs'])} student runs, {seconds:.0f} s of student training in total. Every run in "
        "results.json carries its `cache_key`: the sha256 of its cell, training settings, test data and the store "
        "provenance below. Synthetic set sha256 `" + results["synthetic"]["sha256"] + "`.",
        "",
    ]
    if results["stores"]:
        lines += markdown_table(
            ["teacher", "epoch", "layer", "checkpoint sha256", "views", "dtype"],
            [
                [
                    s["teacher_id"],
                    str(s["epoch"]),
                    s["layer"],
                    f"`{s['checkpoint_sha256'][:16]}`",
                    str(s["views"]),
                    s["dtype"],
                ]
                for s in results["stores"]
            ],
        )
    students = results["config"].get("students", {})
    grid = {
        k: students.get(k)
        for k in (
            "archs",
            "modes",
            "view_policies",
            "feature_loss",
            "lambda_front",
            "lambda_rear",
            "teacher_epoch",
            "layer",
            "seeds",
        )
    }
    lines += ["", "Student grid of this report: " + "; ".join(f"{k} {v}" for k, v in grid.items()) + ".", ""]
    return lines
