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


def protocol_text(results: dict[str, Any]) -> str:
    """The students' protocol as resolved (results.json ``protocol``; older results: the config's epochs and lr)."""
    students = results["config"]["students"]
    p = results.get("protocol") or {"name": None, **students}
    named = f"protocol `{p['name']}` ({p['source']}): " if p.get("name") else ""
    clip = f", gradient clip {p['grad_clip']}" if p.get("grad_clip") else ""
    return (
        f"Students: {named}{p['epochs']} epochs, SGD lr {p['lr']:g} (x0.1 at half), momentum {p['momentum']:g}, "
        f"weight decay {p['weight_decay']:g}, batch {p['batch_size']}, DSA {'on' if p['dsa'] else 'off'}{clip}, "
        f"seeds {students['seeds']}; test accuracy after the last epoch.{runtime_text(results)}"
    )


def runtime_text(results: dict[str, Any]) -> str:
    """Where the cells ran (results.json ``runtime``; absent from results written before 2026-12-07)."""
    r = results.get("runtime")
    return f" Ran on {r['machine']}, {r['device']}, {r['precision']}." if r else ""


def source_text(synthetic: dict[str, Any]) -> str:
    """The files an imported set was read from (results.json ``synthetic.source``), or nothing."""
    source = synthetic.get("source")
    if not source:
        return ""
    files = ", ".join(f"`{f['name']}` (sha256 `{f['sha256'][:16]}`)" for f in source["files"])
    return f" Imported from {files}: format {source['format']}, space {source['space']}."


def reference_text(value: Any) -> str:
    """A reference value; one given per teacher shows once when all teachers share it."""
    if not isinstance(value, dict):
        return str(value)
    values = set(map(str, value.values()))
    return values.pop() if len(values) == 1 else ", ".join(f"{v} ({k})" for k, v in value.items())


SCORE_TEXT = {
    "architecture_gap": (
        "Architecture gap",
        "Points by which each student stays below the distillation architecture ({arch}'s baseline), paired by "
        "seed: 0 or below, the set no longer favours the architecture it was distilled with.",
    ),
    "ior": (
        "Improvement over random (IOR)",
        "Points the set gains over a class-balanced random real subset of the same IPC (`students.yardstick`), "
        "under the same student, arm and seed (DD-Ranking's IOR).",
    ),
    "hlr": (
        "Hard-label recovery (HLR)",
        "Points the student trained on the set (hard labels) stays below the same architecture trained on the whole "
        "training set (`students.full_data`; DD-Ranking's HLR: lower is better).",
    ),
    "lrs": (
        "Label-robust score (LRS)",
        "DD-Ranking's LRS from the arm's IOR and the student's HLR (weight 0.5), in [0, 1] (x100 here).",
    ),
}


def scores_section(results: dict[str, Any]) -> list[str]:
    """One table per score results.json carries (``scores``): students x arms."""
    lines: list[str] = []
    arch = results["config"].get("distill", {}).get("arch")
    for name, (title, text) in SCORE_TEXT.items():
        entries = results.get("scores", {}).get(name, [])
        if not entries:
            continue
        arms = list(dict.fromkeys(e["arm"] for e in entries))
        table = {(e["student"], e["arm"]): e for e in entries}
        rows = [
            [
                student,
                *(
                    _score_text(table[(student, a)], name != "lrs") if (student, a) in table else "–"
                    for a in arms
                ),
            ]
            for student in dict.fromkeys(e["student"] for e in entries)
        ]
        lines += [
            "",
            f"## {title}",
            "",
            text.format(arch=arch),
            "",
            *markdown_table(["student", *arms], rows),
        ]
        if name == "architecture_gap":
            lines += ["", "![architecture gap](plots/architecture_gap.png)"]
    return lines


def _score_text(score: dict[str, Any], signed: bool = True) -> str:
    spread = f" ± {100 * score['std']:.2f}" if score["n"] > 1 else ""
    mean = f"{100 * score['mean']:+.2f}" if signed else f"{100 * score['mean']:.2f}"
    return f"{mean}{spread} (n={score['n']})"


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


DEFAULTS = {
    "teacher_epochs": "each teacher's last extracted epoch",
    "layers": "each teacher's first extracted layer",
}


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
            "loss_modes",
            "view_policies",
            "feature_losses",
            "lambda_front",
            "lambda_rear",
            "teacher_epochs",
            "layers",
            "seeds",
        )
    }
    described = [f"{k} {v}" if v is not None else f"{k} (default: {DEFAULTS[k]})" for k, v in grid.items()]
    lines += ["", "Student grid of this report: " + "; ".join(described) + ".", ""]
    return lines
